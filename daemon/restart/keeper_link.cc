// See keeper_link.h.
#include "daemon/restart/keeper_link.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fd_passing.h"
#include "daemon/restart/keeper.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"

namespace procwarp {
namespace {

using procwarp::state::v1::FdKind;
using procwarp::state::v1::KeeperReply;
using procwarp::state::v1::KeeperRequest;

// A connection to the keeper listening at `path`, if it is alive and runs as
// the daemon's own uid.
UniqueFd ConnectKeeper(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (!fd || path.size() >= sizeof(addr.sun_path)) return UniqueFd();
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == ECONNREFUSED) unlink(path.c_str());  // its keeper is gone
    return UniqueFd();
  }
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      cred.uid != geteuid()) {
    LogError(absl::StrCat("restart: ", path, " is not served by uid ", geteuid(),
                          "; ignored"));
    return UniqueFd();
  }
  return fd;
}

}  // namespace

KeeperLink::KeeperLink(UniqueFd own, const std::string& state_dir)
    : own_(std::move(own)) {
  const std::string own_name =
      absl::StrCat(kKeeperSocketPrefix, getppid(), kKeeperSocketSuffix);
  DIR* dir = opendir(state_dir.c_str());
  if (dir == nullptr) return;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (!absl::StartsWith(name, kKeeperSocketPrefix) ||
        !absl::EndsWith(name, kKeeperSocketSuffix) ||
        (own_.valid() && name == own_name)) {
      continue;
    }
    UniqueFd fd = ConnectKeeper(absl::StrCat(state_dir, "/", name));
    if (fd) others_.push_back(std::move(fd));
  }
  closedir(dir);
}

KeeperLink::~KeeperLink() {
  if (events_.joinable()) {
    char byte = 0;
    (void)!write(stop_write_.get(), &byte, 1);
    events_.join();
  }
}

void KeeperLink::Send(int connection, const KeeperRequest& request,
                      const std::vector<int>& fds) {
  if (!SendKeeperMessage(connection, request, fds) && errno != EPIPE &&
      errno != ECONNRESET) {  // a keeper that is gone
    LogError(ErrnoStatus(errno, "restart: send to keeper").ToString());
  }
}

void KeeperLink::FetchFrom(int connection,
                           std::map<std::string, KeptProcess>* out) {
  {
    absl::MutexLock lock(&send_mu_);
    KeeperRequest fetch;
    fetch.mutable_fetch();
    Send(connection, fetch, {});
  }
  KeeperReply reply;
  std::vector<UniqueFd> fds;
  while (ReceiveKeeperMessage(connection, &reply, &fds)) {
    if (reply.has_done()) return;
    if (reply.has_exited()) {
      (*out)[reply.exited().id()].exit_status = reply.exited().exit_status();
      continue;
    }
    if (!reply.has_group()) continue;
    const auto& group = reply.group();
    if (fds.size() != static_cast<size_t>(group.kinds_size())) continue;
    KeptProcess& kept = (*out)[group.id()];
    for (int i = 0; i < group.kinds_size(); ++i) {
      auto kind = static_cast<FdKind>(group.kinds(i));
      if (!kept.fds.count(kind)) kept.fds[kind] = std::move(fds[i]);
    }
    if (group.exited()) kept.exit_status = group.exit_status();
  }
}

std::map<std::string, KeptProcess> KeeperLink::FetchAll() {
  std::map<std::string, KeptProcess> out;
  // Earlier keepers first: they are the parents, with the exit statuses.
  for (const UniqueFd& fd : others_) FetchFrom(fd.get(), &out);
  if (own_) FetchFrom(own_.get(), &out);
  return out;
}

void KeeperLink::Put(const std::string& id,
                     const std::vector<std::pair<FdKind, int>>& fds) {
  if (!own_) return;
  KeeperRequest request;
  request.mutable_put()->set_id(id);
  std::vector<int> raw;
  for (const auto& [kind, fd] : fds) {
    request.mutable_put()->add_kinds(kind);
    raw.push_back(fd);
  }
  absl::MutexLock lock(&send_mu_);
  Send(own_.get(), request, raw);
}

void KeeperLink::Drop(const std::string& id) {
  KeeperRequest request;
  request.mutable_drop()->set_id(id);
  absl::MutexLock lock(&send_mu_);
  if (own_) Send(own_.get(), request, {});
  for (const UniqueFd& fd : others_) Send(fd.get(), request, {});
}

std::string KeeperLink::Describe() const {
  return absl::StrCat(own_ ? "its keeper" : "no keeper of its own", " and ",
                      others_.size(), " earlier keepers");
}

void KeeperLink::StartEvents(ExitCallback on_exit) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    LogError(ErrnoStatus(errno, "restart: pipe2").ToString());
    return;
  }
  stop_read_.Reset(pipe_fds[0]);
  stop_write_.Reset(pipe_fds[1]);
  events_ = std::thread([this, on_exit = std::move(on_exit)] { EventLoop(on_exit); });
}

void KeeperLink::EventLoop(ExitCallback on_exit) {
  std::vector<int> watched;
  if (own_) watched.push_back(own_.get());
  for (const UniqueFd& fd : others_) watched.push_back(fd.get());
  for (;;) {
    std::vector<pollfd> fds = {{stop_read_.get(), POLLIN, 0}};
    for (int fd : watched) fds.push_back({fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents) return;
    for (size_t i = fds.size(); i-- > 1;) {
      if (fds[i].revents == 0) continue;
      KeeperReply reply;
      std::vector<UniqueFd> unused;
      if (!ReceiveKeeperMessage(fds[i].fd, &reply, &unused)) {
        // That keeper is gone; it reports nothing more.
        watched.erase(watched.begin() + (i - 1));
        continue;
      }
      if (reply.has_exited()) {
        on_exit(reply.exited().id(), reply.exited().exit_status());
      }
    }
  }
}

}  // namespace procwarp
