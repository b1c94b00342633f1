// See systemd_notifier.h.
#include "daemon/server/systemd_notifier.h"

#include <systemd/sd-daemon.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace procwarp {

SystemdNotifier::~SystemdNotifier() { StopWatchdog(); }

void SystemdNotifier::StopWatchdog() {
  if (!stop_watchdog_.HasBeenNotified()) stop_watchdog_.Notify();
  if (watchdog_.joinable()) watchdog_.join();
}

void SystemdNotifier::Ready(absl::string_view status, pid_t main_pid) {
  std::string message = absl::StrCat("READY=1\nSTATUS=", status);
  if (main_pid > 0) absl::StrAppend(&message, "\nMAINPID=", main_pid);
  sd_notify(0, message.c_str());
}

void SystemdNotifier::Status(absl::string_view status) {
  sd_notify(0, absl::StrCat("STATUS=", status).c_str());
}

void SystemdNotifier::Stopping() {
  // No pings once stopping: systemd now times the stop (TimeoutStopSec).
  StopWatchdog();
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void SystemdNotifier::StartWatchdog() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  absl::Duration period = absl::Microseconds(usec) / 2;
  watchdog_ = std::thread([this, period] {
    do {
      sd_notify(0, "WATCHDOG=1");
    } while (!stop_watchdog_.WaitForNotificationWithTimeout(period));
  });
}

}  // namespace procwarp
