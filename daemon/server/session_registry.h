// SessionRegistry: one Session per accepted client connection, keyed by the
// fd number gRPC reports as the call's peer ("fd:N").
//
// fd numbers are reused: once gRPC closes fd N, the next accepted connection
// may be N again. The registry therefore (1) keeps a duplicate of every
// connection's socket, so the socket (and its inode) stays alive and a stale
// lookup cannot match a new socket by inode, and (2) is consulted only while a
// call is alive, which pins its connection's fd (see caller_context.h).
//
// The duplicate is also how a session's end is seen: the watcher thread
// epolls it for the peer's hang-up and then runs the end listeners (which free
// the session's non-persistent handles).
#ifndef PROCWARP_DAEMON_SERVER_SESSION_REGISTRY_H_
#define PROCWARP_DAEMON_SERVER_SESSION_REGISTRY_H_

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

struct Session {
  uint64_t id = 0;  // unique for the daemon's lifetime
  Identity identity;
  int grpc_fd = -1;     // the fd number gRPC owns and names in peer()
  ino_t socket_inode = 0;
  // A pidfd of the peer process (SO_PEERPIDFD, else pidfd_open of the
  // SO_PEERCRED pid at connect), so users of identity.pid can check it is
  // still the same process: null for remote peers or when neither worked.
  std::shared_ptr<const UniqueFd> peer_pidfd;
  // Non-empty: every call on this connection fails UNAUTHENTICATED with this
  // message (a verified client certificate that maps to no identity; see
  // daemon/tls/cert_identity.h). `identity` then holds no uid's rights.
  std::string refusal;
};

// True while the process behind `pidfd` has not exited (so its pid cannot
// have been reused).
bool PeerAlive(const UniqueFd& pidfd);

class SessionRegistry {
 public:
  using EndListener = std::function<void(const Session&)>;

  SessionRegistry();
  ~SessionRegistry();
  SessionRegistry(const SessionRegistry&) = delete;
  SessionRegistry& operator=(const SessionRegistry&) = delete;

  // Records a newly accepted connection on `fd` (still owned by the caller,
  // soon by gRPC) for `identity`; a non-empty `refusal` makes it a session
  // whose calls are all refused with it (Session::refusal).
  absl::StatusOr<std::shared_ptr<const Session>> Register(
      int fd, Identity identity, std::string refusal = "");

  // The session behind a gRPC peer string "fd:N". Fails with UNAUTHENTICATED
  // when the peer is unknown or its socket is not the one registered.
  absl::StatusOr<std::shared_ptr<const Session>> Resolve(
      absl::string_view peer) const;

  // Runs `listener` whenever a session ends (on the watcher thread).
  void AddEndListener(EndListener listener);

  int LiveSessions() const;
  // Live sessions of `identity`'s owner (all its connections).
  int SessionsOf(const Identity& identity) const;
  // False once session `session_id` has ended (before its end listeners run).
  bool IsLive(uint64_t session_id) const;

  // Shuts every live connection's socket down (both directions), so gRPC
  // sees its clients go. For a daemon that is stopping with no call left:
  // see StopServing in daemon/main.cc.
  void HangUpAll();

 private:
  void WatchLoop();
  void EndSession(uint64_t session_id);

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;  // eventfd that stops the watcher
  std::atomic<uint64_t> next_id_{1};
  mutable absl::Mutex mu_;
  std::map<int, std::shared_ptr<const Session>> by_fd_ ABSL_GUARDED_BY(mu_);
  // Duplicates of live sessions' sockets, by session id.
  std::map<uint64_t, std::pair<std::shared_ptr<const Session>, UniqueFd>>
      watched_ ABSL_GUARDED_BY(mu_);
  std::vector<EndListener> listeners_ ABSL_GUARDED_BY(mu_);
  // Live sessions per owner key (Identity::OwnerKey).
  std::map<std::string, int> per_owner_ ABSL_GUARDED_BY(mu_);
  std::thread watcher_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_SESSION_REGISTRY_H_
