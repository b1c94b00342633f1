// Where the client looks for procwarpd's unix socket, and how it tells a
// missing daemon apart from other connection problems before speaking gRPC.
#ifndef PROCWARP_CLIENT_CC_SOCKET_PATH_H_
#define PROCWARP_CLIENT_CC_SOCKET_PATH_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/socket_path.h"

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

// Connects to `socket_path` with a plain unix-socket connect() and closes the
// connection again. Distinguishes the cases a person fixes differently:
// nothing listening (UNAVAILABLE, DaemonNotRunningError), no permission
// (PERMISSION_DENIED), a path too long for a unix socket (INVALID_ARGUMENT).
absl::Status ProbeSocket(const std::string& socket_path);

}  // namespace procwarp

#endif  // PROCWARP_CLIENT_CC_SOCKET_PATH_H_
