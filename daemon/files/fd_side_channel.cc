// See fd_side_channel.h.
#include "daemon/files/fd_side_channel.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fd_passing.h"
#include "daemon/server/listener.h"
#include "daemon/server/log.h"
#include "daemon/thread/thread.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/handle_id.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// Connections accepted per wake-up of the loop before it looks at the rest.
constexpr int kMaxEvents = 64;
// After EMFILE and the like, accepting pauses this long (the listening
// socket stays readable, so retrying at once would spin).
constexpr absl::Duration kAcceptPause = absl::Milliseconds(100);
// At most one log line per this much time about refused or timed-out
// connections and bad tokens.
constexpr absl::Duration kRefusalLogInterval = absl::Seconds(10);

// Sends the int32 reply, with `fd` as SCM_RIGHTS when it is >= 0. The
// socket is non-blocking: a peer that does not read loses the reply, never
// holds up the sender.
bool SendReply(int conn, int32_t value, int fd) {
  return SendWithFd(conn, &value, sizeof(value), fd) ==
         static_cast<ssize_t>(sizeof(value));
}

int CeilMs(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(d + absl::Milliseconds(1) -
                                                  absl::Nanoseconds(1)),
                        60 * 1000));
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
    const std::string& main_path, FdSideChannelLimits limits) {
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
                                         /*owns_path=*/true, limits);
}

FdSideChannel::FdSideChannel(UniqueFd listen_fd, std::string path,
                             bool owns_path, FdSideChannelLimits limits)
    : listen_fd_(std::move(listen_fd)),
      path_(std::move(path)),
      owns_path_(owns_path),
      limits_(limits),
      epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!epoll_fd_ || !wake_fd_) abort();  // out of fds at start-up
  int flags = fcntl(listen_fd_.get(), F_GETFL);
  if (flags >= 0) fcntl(listen_fd_.get(), F_SETFL, flags | O_NONBLOCK);
  for (int fd : {listen_fd_.get(), wake_fd_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) abort();
  }
}

FdSideChannel::~FdSideChannel() { Stop(); }

void FdSideChannel::Start() { thread_ = std::thread([this] { Loop(); }); }

void FdSideChannel::Wake() {
  uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
}

void FdSideChannel::Stop() {
  if (stopping_.exchange(true)) return;
  Wake();
  if (thread_.joinable()) thread_.join();
  // The loop is gone: its connections are closed without a reply.
  connections_.clear();
  // Each worker sees stopping_ within one agent wait slice.
  std::list<Worker> workers;
  {
    absl::MutexLock lock(&mu_);
    workers.swap(workers_);
  }
  for (Worker& w : workers) {
    if (w.thread.joinable()) w.thread.join();
  }
  if (owns_path_) unlink(path_.c_str());
  absl::MutexLock lock(&mu_);
  pending_.clear();
  tokens_per_uid_.clear();
}

// ---------------------------------------------------------------------------
// Tokens.

std::unique_ptr<FdSideChannel::Pending> FdSideChannel::TakeToken(
    std::map<std::string, std::unique_ptr<Pending>>::iterator it) {
  std::unique_ptr<Pending> taken = std::move(it->second);
  pending_.erase(it);
  auto count = tokens_per_uid_.find(taken->uid);
  if (count != tokens_per_uid_.end() && --count->second <= 0) {
    tokens_per_uid_.erase(count);
  }
  return taken;
}

void FdSideChannel::PruneExpired(absl::Time now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto next = std::next(it);
    if (it->second->expires < now) TakeToken(it);
    it = next;
  }
}

absl::StatusOr<std::string> FdSideChannel::Add(const Session& session,
                                               Pending pending,
                                               absl::string_view call) {
  const absl::Time now = absl::Now();
  pending.uid = session.identity.uid;
  pending.caller = session.identity;
  pending.pid = session.identity.pid;
  pending.peer_pidfd = session.peer_pidfd;
  pending.expires = now + kTokenLifetime;
  std::string token = NewHandleId();
  absl::MutexLock lock(&mu_);
  if (stopping_.load()) {
    return absl::UnavailableError(
        absl::StrCat(call, ": the daemon is shutting down"));
  }
  // Unredeemed tokens expire rather than pile up.
  PruneExpired(now);
  int& held = tokens_per_uid_[pending.uid];
  if (held >= limits_.max_tokens_per_uid) {
    if (held == 0) tokens_per_uid_.erase(pending.uid);
    return absl::ResourceExhaustedError(absl::StrCat(
        call, ": uid ", pending.uid, " already holds ", held,
        " unredeemed fd tokens, the most allowed; redeem them on the side "
        "socket or let them expire (",
        absl::FormatDuration(kTokenLifetime), ")"));
  }
  ++held;
  pending_[token] = std::make_unique<Pending>(std::move(pending));
  return token;
}

absl::StatusOr<std::string> FdSideChannel::AddExport(
    const Session& session, UniqueFd fd, std::shared_ptr<Thread> thread) {
  Pending p;
  p.is_export = true;
  p.fd = std::move(fd);
  p.thread = std::move(thread);
  return Add(session, std::move(p), "ExportFd");
}

absl::StatusOr<std::string> FdSideChannel::AddImport(
    const Session& session, std::shared_ptr<Thread> thread, int target_fd,
    bool cloexec) {
  Pending p;
  p.thread = std::move(thread);
  p.target_fd = target_fd;
  p.cloexec = cloexec;
  return Add(session, std::move(p), "ImportFd");
}

std::unique_ptr<FdSideChannel::Pending> FdSideChannel::Redeem(
    absl::string_view token, uid_t uid, pid_t pid) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(std::string(token));
  if (it == pending_.end()) return nullptr;
  Pending& p = *it->second;
  if (p.expires < absl::Now()) {
    TakeToken(it);
    return nullptr;
  }
  // Someone else holding the token is refused but does not burn it: the
  // owner can still redeem it.
  if (p.uid != uid || p.pid != pid) return nullptr;
  if (p.peer_pidfd != nullptr && !PeerAlive(*p.peer_pidfd)) {
    // The asking process is gone, so this pid may be someone else's now.
    TakeToken(it);
    return nullptr;
  }
  return TakeToken(it);
}

// ---------------------------------------------------------------------------
// The serving loop.

void FdSideChannel::Loop() {
  epoll_event events[kMaxEvents];
  while (!stopping_.load()) {
    int n = epoll_wait(epoll_fd_.get(), events, kMaxEvents,
                       NextTimeoutMs(absl::Now()));
    if (n < 0) {
      if (errno == EINTR) continue;
      LogError(absl::StrCat("fd side channel: epoll_wait: ", strerror(errno)));
      return;
    }
    for (int i = 0; i < n && !stopping_.load(); ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_.get()) {
        uint64_t count;
        (void)!read(wake_fd_.get(), &count, sizeof(count));
      } else if (fd == listen_fd_.get()) {
        AcceptAll();
      } else {
        OnReadable(fd);
      }
    }
    const absl::Time now = absl::Now();
    if (accept_paused_until_ != absl::InfinitePast() &&
        now >= accept_paused_until_) {
      accept_paused_until_ = absl::InfinitePast();
      WatchListener(true);
    }
    CloseExpired(now);
    ReapWorkers();
  }
}

void FdSideChannel::WatchListener(bool on) {
  epoll_event ev{};
  ev.events = on ? EPOLLIN : 0;
  ev.data.fd = listen_fd_.get();
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, listen_fd_.get(), &ev) != 0) {
    LogError(absl::StrCat("fd side channel: epoll_ctl(MOD, listening socket, ",
                          on ? "EPOLLIN" : "0", "): ", strerror(errno)));
  }
}

int FdSideChannel::NextTimeoutMs(absl::Time now) const {
  absl::Time next = absl::InfiniteFuture();
  if (accept_paused_until_ != absl::InfinitePast()) next = accept_paused_until_;
  for (const auto& [fd, conn] : connections_) {
    next = std::min(next, conn->deadline);
  }
  if (next == absl::InfiniteFuture()) return -1;
  return CeilMs(next - now);
}

bool FdSideChannel::Admit(uid_t uid) {
  absl::MutexLock lock(&mu_);
  int& mine = connections_per_uid_[uid];
  if (mine >= limits_.max_connections_per_uid ||
      (uid != 0 && non_root_connections_ >= limits_.max_connections)) {
    if (mine == 0) connections_per_uid_.erase(uid);
    return false;
  }
  ++mine;
  if (uid != 0) ++non_root_connections_;
  return true;
}

void FdSideChannel::Release(uid_t uid) {
  absl::MutexLock lock(&mu_);
  auto it = connections_per_uid_.find(uid);
  if (it != connections_per_uid_.end() && --it->second <= 0) {
    connections_per_uid_.erase(it);
  }
  if (uid != 0) --non_root_connections_;
}

void FdSideChannel::AcceptAll() {
  for (int accepted = 0; accepted < kMaxEvents; ++accepted) {
    int raw = accept4(listen_fd_.get(), nullptr, nullptr,
                      SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (raw < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return;
      LogError(absl::StrCat("fd side channel: accept4: ", strerror(errno),
                            "; pausing accepts for ",
                            absl::FormatDuration(kAcceptPause)));
      // Out of fds or memory: stop watching the socket for a moment.
      accept_paused_until_ = absl::Now() + kAcceptPause;
      WatchListener(false);
      return;
    }
    UniqueFd fd(raw);
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      LogError(absl::StrCat("fd side channel: getsockopt(SO_PEERCRED): ",
                            strerror(errno)));
      continue;
    }
    if (!Admit(cred.uid)) {
      // Best effort: the client reads it as the reply to its token.
      SendReply(fd.get(), -EAGAIN, -1);
      NoteRefusal(absl::StrCat("uid ", cred.uid, " pid ", cred.pid,
                               " is over the connection limits (",
                               limits_.max_connections_per_uid, " per uid, ",
                               limits_.max_connections, " in all)"));
      continue;
    }
    auto conn = std::make_unique<Connection>();
    conn->uid = cred.uid;
    conn->pid = cred.pid;
    conn->deadline = absl::Now() + limits_.exchange_timeout;
    conn->token.reserve(kTokenSize);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd.get();
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
      LogError(absl::StrCat("fd side channel: epoll_ctl(ADD): ", strerror(errno)));
      Release(cred.uid);
      continue;
    }
    const int key = fd.get();
    conn->fd = std::move(fd);
    connections_[key] = std::move(conn);
  }
}

void FdSideChannel::NoteRefusal(absl::string_view why) {
  ++unlogged_refusals_;
  const absl::Time now = absl::Now();
  if (now - last_refusal_log_ < kRefusalLogInterval) return;
  LogError(absl::StrCat("fd side channel: closed ", unlogged_refusals_,
                        " connection(s) since the last report; latest: ", why));
  unlogged_refusals_ = 0;
  last_refusal_log_ = now;
}

void FdSideChannel::Close(int fd, int32_t reply) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  if (reply != 0) SendReply(fd, reply, -1);
  // Closing the fd takes it out of the epoll set.
  const uid_t uid = it->second->uid;
  connections_.erase(it);
  Release(uid);
}

void FdSideChannel::CloseExpired(absl::Time now) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    auto next = std::next(it);
    const Connection& conn = *it->second;
    if (conn.deadline <= now) {
      NoteRefusal(absl::StrCat("uid ", conn.uid, " pid ", conn.pid, " sent ",
                               conn.token.size(), " of ", kTokenSize,
                               " token bytes in ",
                               absl::FormatDuration(limits_.exchange_timeout)));
      // No reply: without a whole token this is not an exchange.
      Close(it->first);
    }
    it = next;
  }
}

void FdSideChannel::OnReadable(int fd) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  Connection& conn = *it->second;
  while (conn.token.size() < kTokenSize) {
    char buf[kTokenSize];
    int received = -1;
    ssize_t n = ReceiveWithFd(fd, buf, kTokenSize - conn.token.size(), &received);
    if (n < 0 && errno == EAGAIN) return;  // the rest later (or never)
    UniqueFd incoming(received);
    if (incoming && conn.incoming) {
      Close(fd);  // one fd per exchange
      return;
    }
    if (incoming) conn.incoming = std::move(incoming);
    if (n <= 0) {
      Close(fd);  // EOF, an error, or fds the kernel had to drop
      return;
    }
    conn.token.append(buf, n);
  }
  std::unique_ptr<Pending> p = Redeem(conn.token, conn.uid, conn.pid);
  if (p == nullptr) {
    NoteRefusal(absl::StrCat("uid ", conn.uid, " pid ", conn.pid,
                             " presented a token that is not theirs, used or "
                             "expired"));
    Close(fd);
    return;
  }
  if (p->is_export) {
    if (!SendReply(fd, 0, p->fd.get())) {
      LogError(absl::StrCat("fd side channel: sendmsg: ", strerror(errno)));
    }
    Close(fd);
    return;
  }
  if (!conn.incoming) {
    Close(fd, -EBADF);
    return;
  }
  // The agent may take a while: off the loop, on a thread of its own.
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr) != 0) {
    LogError(absl::StrCat("fd side channel: epoll_ctl(DEL, ", fd,
                          "): ", strerror(errno)));
  }
  std::unique_ptr<Connection> taken = std::move(it->second);
  connections_.erase(it);
  StartImport(std::move(taken), std::move(p));
}

// ---------------------------------------------------------------------------
// Imports.

void FdSideChannel::StartImport(std::unique_ptr<Connection> conn,
                                std::unique_ptr<Pending> pending) {
  const uid_t uid = conn->uid;
  bool started = false;
  {
    absl::MutexLock lock(&mu_);
    workers_.emplace_back();
    Worker* worker = &workers_.back();
    // The connection stays counted for its uid until its reply.
    auto job = [this, worker,
                conn = std::shared_ptr<Connection>(std::move(conn)),
                pending = std::shared_ptr<Pending>(std::move(pending))] {
      const int32_t reply = Import(*conn, *pending);
      // Uncounted before the peer can see the reply, so a client that
      // opens its next exchange right after this one is never refused
      // for it.
      Release(conn->uid);
      SendReply(conn->fd.get(), reply, -1);
      conn->fd.Reset();
      {
        absl::MutexLock lock(&mu_);
        worker->done = true;
      }
      Wake();  // so the loop joins this thread soon
    };
    try {
      worker->thread = std::thread(std::move(job));
      started = true;
    } catch (const std::system_error& e) {
      // No thread to be had; the connection went with the job.
      workers_.pop_back();
      LogError(absl::StrCat("fd side channel: cannot start an import: ",
                            e.what()));
    }
  }
  if (!started) Release(uid);
}

int32_t FdSideChannel::Import(Connection& conn, Pending& pending) {
  const absl::Time deadline = conn.deadline;
  absl::StatusOr<int64_t> installed = pending.thread->InstallFd(
      pending.caller, conn.incoming.get(), pending.target_fd, pending.cloexec,
      [this, deadline] { return stopping_.load() || absl::Now() >= deadline; });
  absl::Status s = installed.status();
  int32_t reply;
  if (s.ok()) {
    const int64_t result = *installed;
    reply = (result >= INT32_MIN && result <= INT32_MAX)
                ? static_cast<int32_t>(result)
                : -EPROTO;
  } else {
    reply = absl::IsCancelled(s) || absl::IsDeadlineExceeded(s)
                ? (stopping_.load() ? -ESHUTDOWN : -ETIMEDOUT)
                : -EPIPE;
    LogError(absl::StrCat("fd side channel: ImportFd into ",
                          pending.thread->Name(), " for uid ", conn.uid, ": ",
                          s.ToString()));
  }
  return reply;
}

void FdSideChannel::ReapWorkers() {
  std::list<Worker> finished;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      auto next = std::next(it);
      if (it->done) finished.splice(finished.end(), workers_, it);
      it = next;
    }
  }
  // Each has set `done` as its last step: joining is immediate.
  for (Worker& w : finished) w.thread.join();
}

}  // namespace procwarp
