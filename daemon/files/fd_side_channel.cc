// See fd_side_channel.h.
#include "daemon/files/fd_side_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd_passing.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/server/listener.h"
#include "daemon/server/log.h"
#include "daemon/thread/threads_service.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/handle_id.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// A client that connects and then stalls must not hold up the accept loop
// (and so everyone else's transfers) for long.
constexpr int kIoTimeoutMs = 2000;

void SetIoTimeout(int fd) {
  timeval tv = {kIoTimeoutMs / 1000, (kIoTimeoutMs % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Reads exactly the token, plus one SCM_RIGHTS fd if the client sent one
// with it (into *fd). False on EOF, timeout, a short message or dropped fds.
bool ReadToken(int conn, std::string* token, UniqueFd* fd) {
  token->assign(FdSideChannel::kTokenSize, '\0');
  size_t got = 0;
  while (got < token->size()) {
    int received = -1;
    ssize_t n = ReceiveWithFd(conn, token->data() + got, token->size() - got,
                              &received);
    // Keep the first fd; close any later one so it cannot leak here.
    if (received >= 0 && !*fd) {
      fd->Reset(received);
    } else if (received >= 0) {
      close(received);
    }
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

// Sends the int32 reply, with `fd` as SCM_RIGHTS when it is >= 0.
bool SendReply(int conn, int32_t value, int fd) {
  return SendWithFd(conn, &value, sizeof(value), fd) ==
         static_cast<ssize_t>(sizeof(value));
}

}  // namespace

std::string BoundUnixPath(int socket_fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(socket_fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return "";
  }
  if (addr.sun_family != AF_UNIX || len <= offsetof(sockaddr_un, sun_path) ||
      addr.sun_path[0] == '\0') {
    return "";  // unnamed or abstract: no file to put ".fds" next to
  }
  return std::string(addr.sun_path, strnlen(addr.sun_path, sizeof(addr.sun_path)));
}

absl::StatusOr<std::unique_ptr<FdSideChannel>> OpenFdSideChannel(
    const std::string& main_path) {
  struct stat st {};
  if (stat(main_path.c_str(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fd side channel: stat(", main_path, ")"));
  }
  SocketOptions options;
  options.path = absl::StrCat(main_path, ".fds");
  // Whoever may use the main socket may use this one, nobody else.
  options.mode = st.st_mode & 0777;
  ASSIGN_OR_RETURN(UniqueFd fd, BindUnixSocket(options));
  if (chown(options.path.c_str(), -1, st.st_gid) != 0) {
    int e = errno;
    unlink(options.path.c_str());
    return ErrnoStatus(e, absl::StrCat("fd side channel: chown(", options.path, ")"));
  }
  return std::make_unique<FdSideChannel>(std::move(fd), options.path,
                                         /*owns_path=*/true);
}

FdSideChannel::FdSideChannel(UniqueFd listen_fd, std::string path,
                             bool owns_path)
    : listen_fd_(std::move(listen_fd)),
      path_(std::move(path)),
      owns_path_(owns_path),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!wake_fd_) abort();  // out of fds at start-up
  int flags = fcntl(listen_fd_.get(), F_GETFL);
  if (flags >= 0) fcntl(listen_fd_.get(), F_SETFL, flags | O_NONBLOCK);
}

FdSideChannel::~FdSideChannel() { Stop(); }

void FdSideChannel::Start() { thread_ = std::thread([this] { AcceptLoop(); }); }

void FdSideChannel::Stop() {
  if (stopping_.exchange(true)) return;
  uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  if (owns_path_) unlink(path_.c_str());
  absl::MutexLock lock(&mu_);
  pending_.clear();
}

std::string FdSideChannel::Add(const Session& session, Pending pending) {
  pending.uid = session.identity.uid;
  pending.pid = session.identity.pid;
  pending.peer_pidfd = session.peer_pidfd;
  pending.expires = absl::Now() + kTokenLifetime;
  std::string token = NewHandleId();
  absl::MutexLock lock(&mu_);
  // Drop expired transfers (closing exported fds) so unredeemed tokens
  // cannot pile up.
  absl::Time now = absl::Now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = it->second->expires < now ? pending_.erase(it) : std::next(it);
  }
  pending_[token] = std::make_unique<Pending>(std::move(pending));
  return token;
}

std::string FdSideChannel::AddExport(const Session& session, UniqueFd fd,
                                     std::shared_ptr<AgentThread> thread) {
  Pending p;
  p.is_export = true;
  p.fd = std::move(fd);
  p.thread = std::move(thread);
  return Add(session, std::move(p));
}

std::string FdSideChannel::AddImport(const Session& session,
                                     std::shared_ptr<AgentThread> thread,
                                     int target_fd, bool cloexec) {
  Pending p;
  p.thread = std::move(thread);
  p.target_fd = target_fd;
  p.cloexec = cloexec;
  return Add(session, std::move(p));
}

std::unique_ptr<FdSideChannel::Pending> FdSideChannel::Redeem(
    absl::string_view token, uid_t uid, pid_t pid) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(std::string(token));
  if (it == pending_.end()) return nullptr;
  Pending& p = *it->second;
  if (p.expires < absl::Now()) {
    pending_.erase(it);
    return nullptr;
  }
  // Someone else holding the token is refused but does not burn it: the
  // owner can still redeem it.
  if (p.uid != uid || p.pid != pid) return nullptr;
  if (p.peer_pidfd != nullptr && !PeerAlive(*p.peer_pidfd)) {
    // The asking process is gone, so this pid may be someone else's now.
    pending_.erase(it);
    return nullptr;
  }
  std::unique_ptr<Pending> taken = std::move(it->second);
  pending_.erase(it);
  return taken;
}

void FdSideChannel::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents != 0) return;
    int raw = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (raw < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        LogError(absl::StrCat("fd side channel: accept: ", strerror(errno)));
        usleep(100 * 1000);
      }
      continue;
    }
    Serve(UniqueFd(raw));
  }
}

void FdSideChannel::Serve(UniqueFd conn) {
  SetIoTimeout(conn.get());
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    LogError(absl::StrCat("fd side channel: getsockopt(SO_PEERCRED): ",
                          strerror(errno)));
    return;
  }
  std::string token;
  UniqueFd incoming;
  if (!ReadToken(conn.get(), &token, &incoming)) return;
  std::unique_ptr<Pending> p = Redeem(token, cred.uid, cred.pid);
  if (p == nullptr) {
    LogError(absl::StrCat("fd side channel: refused a token from uid ",
                          cred.uid, " pid ", cred.pid));
    return;
  }
  if (p->is_export) {
    if (!SendReply(conn.get(), 0, p->fd.get())) {
      LogError(absl::StrCat("fd side channel: sendmsg: ", strerror(errno)));
    }
    return;
  }
  if (!incoming) {
    SendReply(conn.get(), -EBADF, -1);
    return;
  }
  AgentCall call;
  call.op = PW_OP_RECV_FD;
  call.args[0] = static_cast<uint64_t>(static_cast<int64_t>(p->target_fd));
  call.args[1] = p->cloexec ? PW_RECV_FD_CLOEXEC : 0;
  call.fd_to_pass = incoming.get();
  std::vector<AgentReply> replies;
  absl::Status s = p->thread->connection().Run(absl::MakeConstSpan(&call, 1),
                                               &replies);
  int64_t result = s.ok() ? replies[0].result : -EPIPE;
  if (!s.ok()) {
    LogError(absl::StrCat("fd side channel: ImportFd into ", p->thread->Name(),
                          ": ", s.ToString()));
  }
  SendReply(conn.get(), static_cast<int32_t>(result), -1);
}

}  // namespace procwarp
