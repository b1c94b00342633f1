// FdHolder: whoever keeps managed processes' pidfds and stdio ends while no
// daemon runs (docs/architecture.md, "Restart without loss"): the keeper
// process (KeeperLink) or systemd's fd store (SystemdFdStore).
#ifndef PROCWARP_DAEMON_RESTART_FD_HOLDER_H_
#define PROCWARP_DAEMON_RESTART_FD_HOLDER_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/util/unique_fd.h"
#include "proto/procwarp/state/v1/state.pb.h"
#include "proto/procwarp/v1/common.pb.h"

namespace procwarp {

// What the holder kept for one process.
struct KeptProcess {
  std::map<procwarp::state::v1::FdKind, UniqueFd> fds;
  // It ended while no daemon ran, like this (only a keeper knows).
  std::optional<procwarp::v1::ExitStatus> exit_status;
};

class FdHolder {
 public:
  using ExitCallback = std::function<void(
      const std::string& id, const procwarp::v1::ExitStatus& status)>;

  virtual ~FdHolder() = default;
  // Everything held, by process id. Call once, before StartEvents.
  virtual std::map<std::string, KeptProcess> FetchAll() = 0;
  // Holds duplicates of a process's fds.
  virtual void Put(
      const std::string& id,
      const std::vector<std::pair<procwarp::state::v1::FdKind, int>>& fds) = 0;
  // Lets a process's fds go.
  virtual void Drop(const std::string& id) = 0;
  // Whether it learns how the processes it holds end (it is their parent),
  // and reports it through StartEvents' callback.
  virtual bool ReportsExits() const = 0;
  virtual void StartEvents(ExitCallback on_exit) = 0;
  // For the log: "1 earlier keeper", "systemd's fd store".
  virtual std::string Describe() const = 0;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_RESTART_FD_HOLDER_H_
