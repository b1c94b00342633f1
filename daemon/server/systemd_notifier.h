// SystemdNotifier: READY=1 / STATUS= / STOPPING=1 and watchdog pings for
// systemd (Type=notify). Every call is a no-op when NOTIFY_SOCKET is unset,
// so the daemon runs the same way by hand.
#ifndef PROCWARP_DAEMON_SERVER_SYSTEMD_NOTIFIER_H_
#define PROCWARP_DAEMON_SERVER_SYSTEMD_NOTIFIER_H_

#include <sys/types.h>

#include <string>
#include <thread>

#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"

namespace procwarp {

class SystemdNotifier {
 public:
  SystemdNotifier() = default;
  ~SystemdNotifier();  // stops the watchdog thread

  // `main_pid` > 0 adds MAINPID= (the daemon, when it is not the process
  // that was started: daemon/restart/keeper.h).
  void Ready(absl::string_view status, pid_t main_pid = 0);
  void Status(absl::string_view status);
  // STOPPING=1; also ends the watchdog pings.
  void Stopping();
  // Pings WATCHDOG=1 at half the interval systemd asked for (WATCHDOG_USEC),
  // if it asked.
  void StartWatchdog();

 private:
  void StopWatchdog();

  absl::Notification stop_watchdog_;
  std::thread watchdog_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_SYSTEMD_NOTIFIER_H_
