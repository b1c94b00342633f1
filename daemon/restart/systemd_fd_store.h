// SystemdFdStore: systemd's fd store as the holder of managed processes'
// pidfds and stdio ends across daemon restarts, for the service unit
// (keeper "systemd"; docs/architecture.md, "Restart without loss").
//
// Each fd goes to the store with FDSTORE=1 and FDNAME=<process id>.<kind>,
// and leaves it with FDSTOREREMOVE=1; systemd hands the store back through
// LISTEN_FDS/LISTEN_FDNAMES when it starts the daemon again, which is what
// the constructor takes (from TakeActivatedSocket). The unit needs
// FileDescriptorStoreMax= (deploy/procwarpd.service). systemd drops an fd
// from the store by itself when it reports POLLHUP/POLLERR (a pipe whose
// writers are gone).
//
// Unlike the keeper process, systemd reaps the children of a dead daemon
// and tells nobody how they ended: a process that ends while no daemon runs,
// or after being re-adopted, is reported as exited with an unknown status.
#ifndef PROCWARP_DAEMON_RESTART_SYSTEMD_FD_STORE_H_
#define PROCWARP_DAEMON_RESTART_SYSTEMD_FD_STORE_H_

#include <string>
#include <utility>
#include <vector>

#include "daemon/restart/fd_holder.h"

namespace procwarp {

class SystemdFdStore final : public FdHolder {
 public:
  // `restored`: the fds systemd passed at start, with their names.
  explicit SystemdFdStore(std::vector<std::pair<std::string, UniqueFd>> restored);

  std::map<std::string, KeptProcess> FetchAll() override;
  void Put(const std::string& id,
           const std::vector<std::pair<procwarp::state::v1::FdKind, int>>& fds)
      override;
  void Drop(const std::string& id) override;
  bool ReportsExits() const override { return false; }
  void StartEvents(ExitCallback) override {}
  std::string Describe() const override { return "systemd's fd store"; }

 private:
  std::vector<std::pair<std::string, UniqueFd>> restored_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_RESTART_SYSTEMD_FD_STORE_H_
