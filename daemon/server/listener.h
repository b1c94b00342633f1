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
  // OK when the connection on `fd` from `identity` may be served.
  absl::Status Admit(int fd, const Identity& identity) const;
  // Logs a refused connection, at most once a second (with a count of those
  // not logged): a flood of refusals must not flood the journal.
  void LogRefusal(const absl::Status& why);

  UniqueFd listen_fd_;
  UniqueFd wake_fd_;  // eventfd: Stop() wakes the accept loop with it
  SessionRegistry* sessions_;
  std::optional<gid_t> admin_gid_;
  const ConnectionLimits limits_;
  absl::Time last_refusal_log_ = absl::InfinitePast();  // accept thread only
  uint64_t refusals_not_logged_ = 0;                     // accept thread only
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_LISTENER_H_
