// FdSideChannel: the second unix socket (<main socket>.fds) over which fds
// cross between agent threads and local clients with SCM_RIGHTS, which gRPC
// cannot carry.
//
// An ExportFd/ImportFd call (authenticated like any other) leaves a pending
// transfer here under a fresh token; the client then connects to the side
// socket and presents the token. A token is redeemed only by a connection
// whose SO_PEERCRED uid and pid are those of the session that asked for it,
// while that process lives, only once, and only for kTokenLifetime. Anything
// else gets the connection closed without a reply.
//
// Whoever connects is untrusted and may stall on purpose, so no connection
// can hold up another one or shutdown:
// - one thread serves every connection with non-blocking sockets and epoll;
//   each connection has one deadline for its whole exchange (a token sent a
//   byte at a time does not extend it), after which it is closed;
// - an import, which needs the target agent (possibly busy with another
//   call, or stalled by its owner), runs on a worker thread of its own that
//   gives up at the same deadline (reply -ETIMEDOUT);
// - connections (imports in progress included) are capped per uid (from
//   SO_PEERCRED at accept) and in total (root exempt, so other users cannot
//   lock root out); over a cap the connection gets -EAGAIN and is closed;
// - unredeemed tokens are capped per uid (RESOURCE_EXHAUSTED);
// - Stop() returns once the loop and every import worker have seen it, within
//   about one agent wait slice, whatever the peers are doing.
#ifndef PROCWARP_DAEMON_FILES_FD_SIDE_CHANNEL_H_
#define PROCWARP_DAEMON_FILES_FD_SIDE_CHANNEL_H_

#include <sys/types.h>

#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/server/session_registry.h"
#include "daemon/thread/thread.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

struct FdSideChannelLimits {
  // For a connection's whole exchange: token in, reply (and fd) out,
  // including an import's wait for its agent.
  absl::Duration exchange_timeout = absl::Seconds(2);
  // Open side connections per uid, imports in progress included.
  int max_connections_per_uid = 8;
  // Open side connections of all non-root uids together.
  int max_connections = 64;
  // Issued and not yet redeemed (or expired) tokens per uid.
  int max_tokens_per_uid = 64;
};

class FdSideChannel {
 public:
  static constexpr absl::Duration kTokenLifetime = absl::Seconds(10);
  static constexpr size_t kTokenSize = 32;

  // Serves on the listening socket `listen_fd`, bound at `path` (unlinked
  // by Stop() when `owns_path`).
  FdSideChannel(UniqueFd listen_fd, std::string path, bool owns_path,
                FdSideChannelLimits limits = {});
  ~FdSideChannel();
  FdSideChannel(const FdSideChannel&) = delete;
  FdSideChannel& operator=(const FdSideChannel&) = delete;

  const std::string& path() const { return path_; }

  void Start();
  void Stop();

  // A token for handing `fd` (already the daemon's copy) to `session`'s
  // process. RESOURCE_EXHAUSTED when the caller's uid holds too many.
  absl::StatusOr<std::string> AddExport(const Session& session, UniqueFd fd,
                                        std::shared_ptr<Thread> thread);
  // A token for receiving an fd from `session`'s process into `thread`.
  absl::StatusOr<std::string> AddImport(const Session& session,
                                        std::shared_ptr<Thread> thread,
                                        int target_fd, bool cloexec);

 private:
  struct Pending {
    bool is_export = false;
    uid_t uid = 0;
    pid_t pid = 0;
    // Who asked (an attached thread checks its authority at the install).
    Identity caller;
    // Proves identity.pid is still the same process when the token is used.
    std::shared_ptr<const UniqueFd> peer_pidfd;
    absl::Time expires;
    std::shared_ptr<Thread> thread;
    UniqueFd fd;  // export: the fd to send
    int target_fd = -1;
    bool cloexec = false;
  };
  // One accepted side connection.
  struct Connection {
    UniqueFd fd;  // non-blocking
    uid_t uid = 0;
    pid_t pid = 0;
    absl::Time deadline;
    std::string token;  // the bytes received so far
    UniqueFd incoming;  // the fd sent with the token, if any
  };
  // An import in progress on its own thread.
  struct Worker {
    std::thread thread;
    bool done = false;
  };

  absl::StatusOr<std::string> Add(const Session& session, Pending pending,
                                  absl::string_view call);
  // Drops expired tokens (closing exported fds).
  void PruneExpired(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes a token, keeping the per-uid count; returns its transfer.
  std::unique_ptr<Pending> TakeToken(
      std::map<std::string, std::unique_ptr<Pending>>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes and returns the token's transfer if `uid`/`pid` may redeem it.
  std::unique_ptr<Pending> Redeem(absl::string_view token, uid_t uid,
                                  pid_t pid);

  // The serving thread and its steps.
  void Loop();
  void AcceptAll();
  // Counts a new connection of `uid` unless a cap is reached.
  bool Admit(uid_t uid);
  // One connection of `uid` fewer.
  void Release(uid_t uid);
  // Reads what the peer sent; once the token is complete, redeems it.
  void OnReadable(int fd);
  // Closes the connection (the loop's own), replying `reply` first unless 0.
  void Close(int fd, int32_t reply = 0);
  void CloseExpired(absl::Time now);
  // Logs a refused or timed-out connection or a bad token, rate-limited.
  void NoteRefusal(absl::string_view why);
  // Starts or stops watching the listening socket.
  void WatchListener(bool on);
  // Milliseconds until the next deadline (or accept retry), -1 for none.
  int NextTimeoutMs(absl::Time now) const;
  void StartImport(std::unique_ptr<Connection> conn,
                   std::unique_ptr<Pending> pending);
  // A worker's job: RECV_FD into the thread, bounded by the connection's
  // deadline and Stop(). Returns the reply for the peer.
  int32_t Import(Connection& conn, Pending& pending);
  // Joins workers that have finished.
  void ReapWorkers();
  void Wake();

  UniqueFd listen_fd_;
  const std::string path_;
  const bool owns_path_;
  const FdSideChannelLimits limits_;
  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;  // eventfd: stop, or a worker finished
  std::atomic<bool> stopping_{false};
  std::thread thread_;

  // The serving thread's own.
  std::map<int, std::unique_ptr<Connection>> connections_;
  // Out of fds: accepting resumes at this time.
  absl::Time accept_paused_until_ = absl::InfinitePast();
  // Refusals not logged yet (logging each one would let a flood fill logs).
  int unlogged_refusals_ = 0;
  absl::Time last_refusal_log_ = absl::InfinitePast();

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Pending>> pending_ ABSL_GUARDED_BY(mu_);
  std::map<uid_t, int> tokens_per_uid_ ABSL_GUARDED_BY(mu_);
  std::map<uid_t, int> connections_per_uid_ ABSL_GUARDED_BY(mu_);
  int non_root_connections_ ABSL_GUARDED_BY(mu_) = 0;
  std::list<Worker> workers_ ABSL_GUARDED_BY(mu_);
};

// Binds the side socket next to `main_path` ("<main_path>.fds") with the
// main socket's mode and group (as the file at `main_path` has them).
absl::StatusOr<std::unique_ptr<FdSideChannel>> OpenFdSideChannel(
    const std::string& main_path, FdSideChannelLimits limits = {});

// The filesystem path a listening unix socket is bound to, "" if none
// (unnamed or abstract).
std::string BoundUnixPath(int socket_fd);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_FILES_FD_SIDE_CHANNEL_H_
