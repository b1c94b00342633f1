// See session_registry.h.
#include "daemon/server/session_registry.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/util/errno_status.h"

namespace procwarp {
namespace {

// Linux 6.5+; older headers lack the name.
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

// The peer's pidfd. SO_PEERPIDFD names the very process that connected;
// pidfd_open of the SO_PEERCRED pid is the fallback for older kernels (a
// small window where that pid could already be another process, which the
// kernel's own access checks on later use still cover).
std::shared_ptr<const UniqueFd> OpenPeerPidfd(int socket_fd, pid_t pid) {
  if (pid <= 0) return nullptr;
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  if (getsockopt(socket_fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0 ||
      pidfd < 0) {
    pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  }
  if (pidfd < 0) return nullptr;
  // SO_PEERPIDFD's fd is not close-on-exec everywhere; children must not
  // inherit it.
  fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return std::make_shared<const UniqueFd>(pidfd);
}

}  // namespace

SessionRegistry::SessionRegistry()
    : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  // Both are needed to run at all; failing here means the process is out of
  // fds at start-up.
  if (!epoll_fd_ || !wake_fd_) abort();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // session ids start at 1: 0 is the wake-up
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev) != 0) {
    abort();
  }
  watcher_ = std::thread([this] { WatchLoop(); });
}

SessionRegistry::~SessionRegistry() {
  uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
  watcher_.join();
}

bool PeerAlive(const UniqueFd& pidfd) {
  if (!pidfd) return false;
  // A pidfd polls readable once its process has exited.
  pollfd pfd = {pidfd.get(), POLLIN, 0};
  int n = poll(&pfd, 1, 0);
  return n == 0;
}

absl::StatusOr<std::shared_ptr<const Session>> SessionRegistry::Register(
    int fd, Identity identity, std::string refusal) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstat(fd=", fd, ")"));
  }
  UniqueFd watch(fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!watch) return ErrnoStatus(errno, absl::StrCat("dup(fd=", fd, ")"));

  auto session = std::make_shared<Session>();
  session->id = next_id_.fetch_add(1);
  session->identity = std::move(identity);
  session->grpc_fd = fd;
  session->socket_inode = st.st_ino;
  session->peer_pidfd = OpenPeerPidfd(fd, session->identity.pid);
  session->refusal = std::move(refusal);

  epoll_event ev{};
  ev.events = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
  ev.data.u64 = session->id;
  {
    absl::MutexLock lock(&mu_);
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, watch.get(), &ev) != 0) {
      return ErrnoStatus(errno, "epoll_ctl(EPOLL_CTL_ADD, session socket)");
    }
    by_fd_[fd] = session;
    watched_[session->id] = {session, std::move(watch)};
    ++per_owner_[session->identity.OwnerKey()];
  }
  return std::shared_ptr<const Session>(session);
}

absl::StatusOr<std::shared_ptr<const Session>> SessionRegistry::Resolve(
    absl::string_view peer) const {
  int fd = -1;
  absl::string_view number = peer;
  if (!absl::ConsumePrefix(&number, "fd:") || !absl::SimpleAtoi(number, &fd)) {
    return absl::UnauthenticatedError(
        absl::StrCat("unrecognised peer '", peer, "'"));
  }
  std::shared_ptr<const Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_fd_.find(fd);
    if (it != by_fd_.end()) session = it->second;
  }
  struct stat st {};
  if (session == nullptr || fstat(fd, &st) != 0 ||
      st.st_ino != session->socket_inode) {
    return absl::UnauthenticatedError(
        absl::StrCat("no authenticated session for peer '", peer, "'"));
  }
  return session;
}

void SessionRegistry::AddEndListener(EndListener listener) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(std::move(listener));
}

bool SessionRegistry::IsLive(uint64_t session_id) const {
  absl::MutexLock lock(&mu_);
  return watched_.count(session_id) > 0;
}

int SessionRegistry::LiveSessions() const {
  absl::MutexLock lock(&mu_);
  return watched_.size();
}

int SessionRegistry::SessionsOf(const Identity& identity) const {
  absl::MutexLock lock(&mu_);
  auto it = per_owner_.find(identity.OwnerKey());
  return it == per_owner_.end() ? 0 : it->second;
}

void SessionRegistry::HangUpAll() {
  absl::MutexLock lock(&mu_);
  // The duplicate shares the socket with gRPC's fd, so this ends gRPC's side
  // too; the watcher then ends each session as for a client hang-up.
  for (const auto& [id, watched] : watched_) {
    shutdown(watched.second.get(), SHUT_RDWR);
  }
}

void SessionRegistry::WatchLoop() {
  epoll_event events[32];
  for (;;) {
    int n = epoll_wait(epoll_fd_.get(), events, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      abort();  // only EBADF/EFAULT/EINVAL: a programming error
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == 0) return;  // destructor woke us
      EndSession(events[i].data.u64);
    }
  }
}

void SessionRegistry::EndSession(uint64_t session_id) {
  std::shared_ptr<const Session> session;
  std::vector<EndListener> listeners;
  {
    absl::MutexLock lock(&mu_);
    auto it = watched_.find(session_id);
    if (it == watched_.end()) return;
    session = it->second.first;
    // Closing the duplicate removes it from the epoll set.
    watched_.erase(it);
    auto by_fd = by_fd_.find(session->grpc_fd);
    if (by_fd != by_fd_.end() && by_fd->second == session) by_fd_.erase(by_fd);
    auto owner = per_owner_.find(session->identity.OwnerKey());
    if (owner != per_owner_.end() && --owner->second <= 0) per_owner_.erase(owner);
    listeners = listeners_;
  }
  for (const auto& listener : listeners) listener(*session);
}

}  // namespace procwarp
