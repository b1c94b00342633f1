// Where the client looks for procwarpd's unix socket, and how it tells a
// missing daemon apart from other connection problems before speaking gRPC.
#ifndef PROCWARP_CLIENT_CC_SOCKET_PATH_H_
#define PROCWARP_CLIENT_CC_SOCKET_PATH_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/socket_path.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

// Environment variable that overrides the default socket path.
inline constexpr char kSocketPathEnvVar[] = "PROCWARP_SOCKET";

// The inputs that decide the default socket path, separated from the real
// process environment so the rule can be tested.
struct SocketPathInputs {
  uid_t euid = 0;
  // Value of $PROCWARP_SOCKET; unset and empty mean the same.
  std::optional<std::string> procwarp_socket;
  // Value of $XDG_RUNTIME_DIR; unset and empty mean the same.
  std::optional<std::string> xdg_runtime_dir;
};

// The daemon's default socket path for `inputs`: $PROCWARP_SOCKET if set,
// else the daemon's own default, StandardSocketPath() (common/socket_path.h).
std::string DefaultSocketPathFor(const SocketPathInputs& inputs);

// DefaultSocketPathFor() applied to this process's euid and environment.
std::string DefaultSocketPath();

// The UNAVAILABLE status returned when no daemon listens at `socket_path`,
// worded so a person knows what to do next.
absl::Status DaemonNotRunningError(const std::string& socket_path);

// Connects a new close-on-exec unix stream socket to `path`, waiting at most
// `timeout` while the listener's backlog is full (a blocking connect() would
// wait for ever). Returns the connected socket; on failure returns an invalid
// fd and sets *error to the errno of the call that failed: ENAMETOOLONG for a
// path that does not fit in a sockaddr_un, EAGAIN when the backlog stayed
// full, else what socket() or connect() said.
UniqueFd ConnectUnixSocket(const std::string& path, absl::Duration timeout,
                           int* error);

// Explains ConnectUnixSocket failing with `error` for the daemon's socket at
// `socket_path`, separating the cases a person fixes differently: nothing
// listening (UNAVAILABLE, DaemonNotRunningError), no permission
// (PERMISSION_DENIED), a path too long for a unix socket (INVALID_ARGUMENT),
// a daemon too busy to accept (UNAVAILABLE).
absl::Status DaemonConnectError(const std::string& socket_path, int error);

// Connects to `socket_path` with a plain unix-socket connect() and closes the
// connection again, sending nothing; errors as DaemonConnectError.
absl::Status ProbeSocket(const std::string& socket_path);

}  // namespace procwarp

#endif  // PROCWARP_CLIENT_CC_SOCKET_PATH_H_
