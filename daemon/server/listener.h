// Listener: the daemon's own accept loop on the local unix socket.
//
// Each accepted connection's peer credentials are read and registered as a
// Session before the fd is handed to gRPC (AddInsecureChannelFromFd), so no
// call can arrive on a connection whose identity is unknown.
//
// Connections are bounded per identity, and non-admins may not use the last
// file descriptors (ConnectionLimits): a connection past either bound is
// closed right after accept, before it is registered, so one user's idle
// connections can neither use up the daemon's fds nor keep root out.
#ifndef PROCWARP_DAEMON_SERVER_LISTENER_H_
#define PROCWARP_DAEMON_SERVER_LISTENER_H_

#include <sys/types.h>

#include <atomic>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/server/session_registry.h"
#include "daemon/util/unique_fd.h"
#include "grpcpp/server.h"

namespace procwarp {

struct SocketOptions {
  std::string path;
  // 0: 0660 with group `group` when it exists, else 0600.
  mode_t mode = 0;
  std::string group = "procwarp";
};

// Binds and listens on `options.path`, creating its directory (0755).
// Refuses (FAILED_PRECONDITION) when a live daemon already answers there and
// removes a stale socket file.
absl::StatusOr<UniqueFd> BindUnixSocket(const SocketOptions& options);

// The listening socket systemd passed (LISTEN_FDS), if any. With `stored`,
// the other fds systemd passed (its fd store's, given back at start:
// daemon/restart/systemd_fd_store.h) go there with their FDNAME; without
// it, any other fd is an error.
absl::StatusOr<std::optional<UniqueFd>> TakeActivatedSocket(
    std::vector<std::pair<std::string, UniqueFd>>* stored = nullptr);

struct ConnectionLimits {
  // Live connections per non-admin identity / per admin identity.
  int per_identity = 64;
  int per_admin = 1024;
  // File descriptors below RLIMIT_NOFILE that only admins' connections may
  // take. Linux hands out the lowest free fd, so an accepted fd numbered at
  // or above (limit - reserve) means fewer than `reserve` are left.
  int fd_reserve = 256;
};

// OK when the connection on `fd` from `identity` may be served: under its
// identity's connection limit, and (for non-admins) not into the fds kept
// for admins. Shared by the unix listener and the TLS listener
// (daemon/tls/tls_listener.h), so both bound connections the same way.
absl::Status AdmitConnection(const SessionRegistry& sessions,
                             const ConnectionLimits& limits, int fd,
                             const Identity& identity);
// The same, given the number of connections `identity`'s owner has `open`
// (for SessionRegistry::Bind, which counts them under its lock).
absl::Status AdmitConnectionWith(int open, const ConnectionLimits& limits,
                                 int fd, const Identity& identity);

// Logs refusals at most once a second, with a count of those not logged: a
// flood of refused connections must not flood the journal.
class RefusalLog {
 public:
  void Log(const absl::Status& why);

 private:
  absl::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t not_logged_ ABSL_GUARDED_BY(mu_) = 0;
};

class Listener {
 public:
  Listener(UniqueFd listen_fd, SessionRegistry* sessions,
           std::optional<gid_t> admin_gid, ConnectionLimits limits = {});
  ~Listener();

  // Starts accepting into `server` (which must be started already).
  void Start(grpc::Server* server);
  // Stops accepting; connections already handed to gRPC stay.
  void Stop();

 private:
  void AcceptLoop(grpc::Server* server);

  UniqueFd listen_fd_;
  UniqueFd wake_fd_;  // eventfd: Stop() wakes the accept loop with it
  SessionRegistry* sessions_;
  std::optional<gid_t> admin_gid_;
  const ConnectionLimits limits_;
  RefusalLog refusals_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_LISTENER_H_
