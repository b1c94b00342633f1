// See session_registry.h.
#include "daemon/server/session_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

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

// Watcher wake-ups, beside session ids (which start at 1 and never reach
// the top).
constexpr uint64_t kStop = 0;
constexpr uint64_t kRearm = ~uint64_t{0};

}  // namespace

SessionRegistry::SessionRegistry()
    : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      rearm_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  // Both are needed to run at all; failing here means the process is out of
  // fds at start-up.
  if (!epoll_fd_ || !wake_fd_ || !rearm_fd_) abort();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kStop;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev) != 0) {
    abort();
  }
  ev.data.u64 = kRearm;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, rearm_fd_.get(), &ev) != 0) {
    abort();
  }
  watcher_ = std::thread([this] { WatchLoop(); });
}

SessionRegistry::~SessionRegistry() {
  uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
  watcher_.join();
}

std::string FormatPeerAddress(const sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
  return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
}

std::string PeerAddressOf(absl::string_view grpc_peer) {
  sockaddr_storage address{};
  absl::string_view rest = grpc_peer;
  const bool v4 = absl::ConsumePrefix(&rest, "ipv4:");
  if (!v4 && !absl::ConsumePrefix(&rest, "ipv6:")) return "";
  const size_t colon = rest.rfind(':');
  uint32_t port = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(rest.substr(colon + 1), &port) || port > 65535) {
    return "";
  }
  std::string host(rest.substr(0, colon));
  if (!v4) {
    // gRPC writes "[::1]", newer versions "%5B::1%5D".
    absl::string_view h = host;
    if (!(absl::ConsumePrefix(&h, "[") && absl::ConsumeSuffix(&h, "]")) &&
        !(absl::ConsumePrefix(&h, "%5B") && absl::ConsumeSuffix(&h, "%5D"))) {
      return "";
    }
    host = std::string(h);
  }
  if (v4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&address);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1) return "";
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1) return "";
  }
  return FormatPeerAddress(address);
}

bool PeerAlive(const UniqueFd& pidfd) {
  if (!pidfd) return false;
  // A pidfd polls readable once its process has exited.
  pollfd pfd = {pidfd.get(), POLLIN, 0};
  int n = poll(&pfd, 1, 0);
  return n == 0;
}

absl::StatusOr<SessionRegistry::Connection> SessionRegistry::Watch(int fd,
                                                                   uint64_t id) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstat(fd=", fd, ")"));
  }
  Connection connection;
  connection.watch = UniqueFd(fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!connection.watch) {
    return ErrnoStatus(errno, absl::StrCat("dup(fd=", fd, ")"));
  }
  connection.grpc_fd = fd;
  connection.socket_inode = st.st_ino;
  epoll_event ev{};
  ev.events = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
  ev.data.u64 = id;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, connection.watch.get(), &ev) != 0) {
    return ErrnoStatus(errno, "epoll_ctl(EPOLL_CTL_ADD, session socket)");
  }
  return connection;
}

absl::StatusOr<std::shared_ptr<const Session>> SessionRegistry::Register(
    int fd, Identity identity, std::string refusal) {
  auto session = std::make_shared<Session>();
  session->id = next_id_.fetch_add(1);
  session->identity = std::move(identity);
  session->grpc_fd = fd;
  session->peer_pidfd = OpenPeerPidfd(fd, session->identity.pid);
  session->refusal = std::move(refusal);

  absl::MutexLock lock(&mu_);
  absl::StatusOr<Connection> connection = Watch(fd, session->id);
  if (!connection.ok()) return connection.status();
  session->socket_inode = connection->socket_inode;
  connection->session = session;
  by_fd_[fd] = session;
  watched_[session->id] = *std::move(connection);
  ++per_owner_[session->identity.OwnerKey()];
  return std::shared_ptr<const Session>(session);
}

absl::Status SessionRegistry::RegisterPending(int fd,
                                              const std::string& peer_address,
                                              std::function<void(bool)> on_end,
                                              absl::Time bind_deadline) {
  const uint64_t id = next_id_.fetch_add(1);
  absl::MutexLock lock(&mu_);
  if (by_address_.count(peer_address) > 0) {
    return absl::AlreadyExistsError(absl::StrCat(
        "a connection from ", peer_address, " is already open"));
  }
  absl::StatusOr<Connection> connection = Watch(fd, id);
  if (!connection.ok()) return connection.status();
  connection->peer_address = peer_address;
  connection->on_end = std::move(on_end);
  connection->bind_deadline = bind_deadline;
  by_address_[peer_address] = id;
  watched_[id] = *std::move(connection);
  if (bind_deadline != absl::InfiniteFuture()) {
    uint64_t one = 1;
    (void)!write(rearm_fd_.get(), &one, sizeof(one));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SessionRegistry::IdOfAddressLocked(
    const std::string& peer_address) const {
  auto id = by_address_.find(peer_address);
  if (id == by_address_.end()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "no authenticated session for peer '", peer_address, "'"));
  }
  return id->second;
}

absl::StatusOr<std::shared_ptr<const Session>> SessionRegistry::RemoteSession(
    const std::string& peer_address) const {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const uint64_t id, IdOfAddressLocked(peer_address));
  return watched_.at(id).session;
}

absl::StatusOr<std::shared_ptr<const Session>> SessionRegistry::Bind(
    const std::string& peer_address, Identity identity, std::string refusal,
    std::string certificate, const Admission& admit) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const uint64_t id, IdOfAddressLocked(peer_address));
  Connection& connection = watched_.at(id);
  if (connection.session != nullptr) return connection.session;
  const std::string owner = identity.OwnerKey();
  auto open = per_owner_.find(owner);
  if (absl::Status admitted =
          admit(open == per_owner_.end() ? 0 : open->second, connection.grpc_fd);
      !admitted.ok()) {
    // gRPC sees its socket end and closes it; the watcher then ends the
    // connection here.
    shutdown(connection.watch.get(), SHUT_RDWR);
    return admitted;
  }
  auto session = std::make_shared<Session>();
  session->id = id;
  session->identity = std::move(identity);
  session->grpc_fd = connection.grpc_fd;
  session->socket_inode = connection.socket_inode;
  session->refusal = std::move(refusal);
  session->certificate = std::move(certificate);
  connection.session = session;
  ++per_owner_[owner];
  return connection.session;
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

int SessionRegistry::ShutDownOverdue() {
  const absl::Time now = absl::Now();
  absl::Time next = absl::InfiniteFuture();
  absl::MutexLock lock(&mu_);
  for (auto& [id, connection] : watched_) {
    if (connection.session != nullptr ||
        connection.bind_deadline == absl::InfiniteFuture()) {
      continue;
    }
    if (connection.bind_deadline <= now) {
      // Its hang-up comes back through epoll and ends it.
      shutdown(connection.watch.get(), SHUT_RDWR);
      connection.bind_deadline = absl::InfiniteFuture();
    } else {
      next = std::min(next, connection.bind_deadline);
    }
  }
  if (next == absl::InfiniteFuture()) return -1;
  return static_cast<int>(std::min<int64_t>(
      absl::ToInt64Milliseconds(absl::Ceil(next - now, absl::Milliseconds(1))),
      std::numeric_limits<int>::max()));
}

void SessionRegistry::HangUpAll() {
  absl::MutexLock lock(&mu_);
  // The duplicate shares the socket with gRPC's fd, so this ends gRPC's side
  // too (TCP connections' included); the watcher then ends each session as
  // for a client hang-up.
  for (const auto& [id, connection] : watched_) {
    shutdown(connection.watch.get(), SHUT_RDWR);
  }
}

void SessionRegistry::WatchLoop() {
  epoll_event events[32];
  for (;;) {
    int n = epoll_wait(epoll_fd_.get(), events, 32, ShutDownOverdue());
    if (n < 0) {
      if (errno == EINTR) continue;
      abort();  // only EBADF/EFAULT/EINVAL: a programming error
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kStop) return;  // destructor woke us
      if (events[i].data.u64 == kRearm) {
        uint64_t count;
        (void)!read(rearm_fd_.get(), &count, sizeof(count));
        continue;  // the next turn waits for the new deadline too
      }
      EndSession(events[i].data.u64);
    }
  }
}

void SessionRegistry::EndSession(uint64_t session_id) {
  std::shared_ptr<const Session> session;
  std::function<void(bool)> on_end;
  std::vector<EndListener> listeners;
  {
    absl::MutexLock lock(&mu_);
    auto it = watched_.find(session_id);
    if (it == watched_.end()) return;
    // Closing the duplicate (when `ended` goes) removes it from the epoll set.
    Connection ended = std::move(it->second);
    watched_.erase(it);
    on_end = std::move(ended.on_end);
    if (!ended.peer_address.empty()) by_address_.erase(ended.peer_address);
    session = std::move(ended.session);
    if (session != nullptr) {
      auto by_fd = by_fd_.find(session->grpc_fd);
      if (by_fd != by_fd_.end() && by_fd->second == session) by_fd_.erase(by_fd);
      auto owner = per_owner_.find(session->identity.OwnerKey());
      if (owner != per_owner_.end() && --owner->second <= 0) per_owner_.erase(owner);
      listeners = listeners_;
    }
  }
  // A pending connection never had a session: nothing can be owned by it.
  for (const auto& listener : listeners) listener(*session);
  if (on_end) on_end(session != nullptr);
}

}  // namespace procwarp
