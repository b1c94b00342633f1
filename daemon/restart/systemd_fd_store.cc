// See systemd_fd_store.h.
#include "daemon/restart/systemd_fd_store.h"

#include <systemd/sd-daemon.h>

#include "absl/strings/str_cat.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"

namespace procwarp {
namespace {

using procwarp::state::v1::FdKind;

std::string FdName(const std::string& id, FdKind kind) {
  return absl::StrCat(id, ".", procwarp::state::v1::FdKind_Name(kind));
}

}  // namespace

SystemdFdStore::SystemdFdStore(
    std::vector<std::pair<std::string, UniqueFd>> restored)
    : restored_(std::move(restored)) {}

std::map<std::string, KeptProcess> SystemdFdStore::FetchAll() {
  std::map<std::string, KeptProcess> out;
  for (auto& [name, fd] : restored_) {
    size_t dot = name.rfind('.');
    FdKind kind;
    if (dot == std::string::npos ||
        !procwarp::state::v1::FdKind_Parse(name.substr(dot + 1), &kind)) {
      LogError(absl::StrCat("restart: systemd passed fd '", name,
                            "', which is not one of the daemon's: closed"));
      continue;
    }
    out[name.substr(0, dot)].fds[kind] = std::move(fd);
  }
  restored_.clear();
  return out;
}

void SystemdFdStore::Put(const std::string& id,
                         const std::vector<std::pair<FdKind, int>>& fds) {
  for (const auto& [kind, fd] : fds) {
    int r = sd_pid_notify_with_fds(
        0, /*unset_environment=*/0,
        absl::StrCat("FDSTORE=1\nFDNAME=", FdName(id, kind)).c_str(), &fd, 1);
    if (r <= 0) {
      LogError(absl::StrCat("restart: cannot put ", FdName(id, kind),
                            " in systemd's fd store (", r == 0 ? "no NOTIFY_SOCKET"
                                                              : ErrnoStatus(-r, "sd_notify").ToString(),
                            "): it will not survive a restart"));
    }
  }
}

void SystemdFdStore::Drop(const std::string& id) {
  for (FdKind kind : {procwarp::state::v1::FD_KIND_PIDFD, procwarp::state::v1::FD_KIND_STDIN,
                      procwarp::state::v1::FD_KIND_STDOUT, procwarp::state::v1::FD_KIND_STDERR,
                      procwarp::state::v1::FD_KIND_PTY,
                      procwarp::state::v1::FD_KIND_AGENT_SOCKET}) {
    sd_notify(0, absl::StrCat("FDSTOREREMOVE=1\nFDNAME=", FdName(id, kind)).c_str());
  }
}

}  // namespace procwarp
