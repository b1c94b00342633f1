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
//
// TCP connections (mutual TLS, docs/remote.md) are keyed by the peer's
// address instead, which gRPC reports as "ipv4:ADDR:PORT" / "ipv6:[ADDR]:PORT"
// for them. gRPC does their TLS, so their caller is known only once a call
// arrives with the verified certificate: they are registered *pending* at
// accept (RegisterPending) and bound to an identity on their first call
// (Bind; daemon/tls/remote_callers.h). A pending connection counts as a
// client but has no Session yet, and nothing can be done on it.
#ifndef PROCWARP_DAEMON_SERVER_SESSION_REGISTRY_H_
#define PROCWARP_DAEMON_SERVER_SESSION_REGISTRY_H_

#include <sys/socket.h>
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
#include "absl/time/time.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

struct Session {
  uint64_t id = 0;  // unique for the daemon's lifetime
  Identity identity;
  int grpc_fd = -1;     // the fd number gRPC owns and names in peer()
  ino_t socket_inode = 0;
  // Remote sessions only: the client certificate (PEM) the connection was
  // verified with, so every later call can be checked to come from it.
  std::string certificate;
  // A pidfd of the peer process (SO_PEERPIDFD, else pidfd_open of the
  // SO_PEERCRED pid at connect), so users of identity.pid can check it is
  // still the same process: null for remote peers or when neither worked.
  std::shared_ptr<const UniqueFd> peer_pidfd;
  // Non-empty: every call on this connection fails UNAUTHENTICATED with this
  // message (a verified client certificate that maps to no identity; see
  // daemon/tls/cert_identity.h). `identity` then holds no uid's rights.
  std::string refusal;
};

// The canonical "ADDR:PORT" / "[ADDR]:PORT" of a gRPC peer string
// "ipv4:ADDR:PORT" / "ipv6:[ADDR]:PORT" (brackets maybe percent-encoded),
// as FormatPeerAddress would write it; empty for any other peer ("fd:N").
std::string PeerAddressOf(absl::string_view grpc_peer);

// "ADDR:PORT" / "[ADDR]:PORT" for an IPv4 or IPv6 socket address.
std::string FormatPeerAddress(const struct sockaddr_storage& address);

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

  // Records a TCP connection on `fd` from `peer_address` ("ADDR:PORT" or
  // "[ADDR]:PORT", as PeerAddressOf formats it) about to be handed to gRPC,
  // before its caller is known; `on_end(bound)` runs (on the watcher thread)
  // when it ends, with whether it was ever bound. Still pending at
  // `bind_deadline`, it is shut down (gRPC then closes it): a client that
  // connects and never calls holds it no longer than that. ALREADY_EXISTS
  // when a live connection has the same peer address (possible only
  // through different local addresses): the caller closes the new one.
  absl::Status RegisterPending(int fd, const std::string& peer_address,
                               std::function<void(bool bound)> on_end,
                               absl::Time bind_deadline = absl::InfiniteFuture());

  // The session of the TCP connection from `peer_address`: null while it is
  // pending, UNAUTHENTICATED when there is no such connection (it ended).
  absl::StatusOr<std::shared_ptr<const Session>> RemoteSession(
      const std::string& peer_address) const;

  // Binds the pending connection from `peer_address` to `identity` (with
  // `refusal` as in Register, and the `certificate` it was verified with),
  // if `admit(connections the identity's owner has open)` allows it; else
  // shuts the connection down (gRPC then ends it, as the unix listener
  // closes a connection over the limits) and returns admit's error. When
  // the connection is already bound (two first calls at once), returns its
  // session as it is.
  using Admission = std::function<absl::Status(int open, int fd)>;
  absl::StatusOr<std::shared_ptr<const Session>> Bind(
      const std::string& peer_address, Identity identity, std::string refusal,
      std::string certificate, const Admission& admit);

  // Runs `listener` whenever a session ends (on the watcher thread).
  void AddEndListener(EndListener listener);

  // Connections, bound or pending.
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
  // A live connection: its session (null while pending) and the duplicate
  // of its socket the watcher epolls.
  struct Connection {
    std::shared_ptr<const Session> session;
    UniqueFd watch;
    int grpc_fd = -1;
    ino_t socket_inode = 0;
    std::string peer_address;      // TCP only
    std::function<void(bool bound)> on_end;  // TCP only
    // TCP only: shut down if still pending then.
    absl::Time bind_deadline = absl::InfiniteFuture();
  };

  // A duplicate of `fd` added to the epoll set under `id`, with `fd`'s inode.
  absl::StatusOr<Connection> Watch(int fd, uint64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WatchLoop();
  // Shuts down the pending connections past their bind deadline; returns
  // the milliseconds until the next deadline (-1: none).
  int ShutDownOverdue();
  void EndSession(uint64_t session_id);
  // The id of the TCP connection from `peer_address`, or UNAUTHENTICATED.
  absl::StatusOr<uint64_t> IdOfAddressLocked(const std::string& peer_address) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;   // eventfd that stops the watcher
  UniqueFd rearm_fd_;  // eventfd: a new bind deadline to wait for
  std::atomic<uint64_t> next_id_{1};
  mutable absl::Mutex mu_;
  std::map<int, std::shared_ptr<const Session>> by_fd_ ABSL_GUARDED_BY(mu_);
  // TCP connections' ids by peer address.
  std::map<std::string, uint64_t> by_address_ ABSL_GUARDED_BY(mu_);
  // Live connections by session id.
  std::map<uint64_t, Connection> watched_ ABSL_GUARDED_BY(mu_);
  std::vector<EndListener> listeners_ ABSL_GUARDED_BY(mu_);
  // Live sessions per owner key (Identity::OwnerKey).
  std::map<std::string, int> per_owner_ ABSL_GUARDED_BY(mu_);
  std::thread watcher_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_SESSION_REGISTRY_H_
