// Listener: the daemon's own accept loop on the local unix socket.
//
// Each accepted connection's peer credentials are read and registered as a
// Session before the fd is handed to gRPC (AddInsecureChannelFromFd), so no
// call can arrive on a connection whose identity is unknown.
#ifndef PROCWARP_DAEMON_SERVER_LISTENER_H_
#define PROCWARP_DAEMON_SERVER_LISTENER_H_

#include <sys/types.h>

#include <atomic>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
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

// The listening socket systemd passed (LISTEN_FDS), if any.
absl::StatusOr<std::optional<UniqueFd>> TakeActivatedSocket();

class Listener {
 public:
  Listener(UniqueFd listen_fd, SessionRegistry* sessions,
           std::optional<gid_t> admin_gid);
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
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_LISTENER_H_
