// Default socket path resolution, and the plain connect() to the daemon's
// socket that the client makes itself before gRPC may use it.
#include "client/cc/socket_path.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace procwarp {
namespace {

// Reads an environment variable, treating an empty value as unset.
std::optional<std::string> GetEnv(const char* name) {
  const char* value = getenv(name);
  if (value == nullptr || value[0] == '\0') return std::nullopt;
  return std::string(value);
}

bool IsSet(const std::optional<std::string>& value) {
  return value.has_value() && !value->empty();
}

// How long ProbeSocket waits for room in a full listen backlog.
constexpr absl::Duration kProbeTimeout = absl::Seconds(10);

}  // namespace

std::string DefaultSocketPathFor(const SocketPathInputs& inputs) {
  if (IsSet(inputs.procwarp_socket)) return *inputs.procwarp_socket;
  return StandardSocketPath(inputs.euid, inputs.xdg_runtime_dir);
}

std::string DefaultSocketPath() {
  return DefaultSocketPathFor({.euid = geteuid(),
                               .procwarp_socket = GetEnv(kSocketPathEnvVar),
                               .xdg_runtime_dir = GetEnv("XDG_RUNTIME_DIR")});
}

absl::Status DaemonNotRunningError(const std::string& socket_path) {
  return absl::UnavailableError(
      absl::StrCat("procwarpd is not running at ", socket_path,
                   " (start it with: sudo procwarpd, or systemctl start "
                   "procwarpd.socket)"));
}

UniqueFd ConnectUnixSocket(const std::string& path, absl::Duration timeout,
                           int* error) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    *error = ENAMETOOLONG;
    return UniqueFd();
  }
  memcpy(address.sun_path, path.data(), path.size());

  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    *error = errno;
    return UniqueFd();
  }
  // connect() on a unix socket sleeps while the listener's backlog is full
  // (anyone who may connect can fill it) for as long as SO_SNDTIMEO allows,
  // then fails with EAGAIN.
  const timeval limit = absl::ToTimeval(timeout);
  if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit)) !=
      0) {
    *error = errno;
    return UniqueFd();
  }
  int result;
  do {
    result = connect(fd.get(), reinterpret_cast<const sockaddr*>(&address),
                     sizeof(address));
  } while (result < 0 && errno == EINTR);
  if (result != 0) {
    *error = errno;
    return UniqueFd();
  }
  // Back to no send timeout: whoever uses the socket next (gRPC) decides.
  const timeval none = {};
  if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none)) !=
      0) {
    *error = errno;
    return UniqueFd();
  }
  *error = 0;
  return fd;
}

absl::Status DaemonConnectError(const std::string& socket_path, int error) {
  switch (error) {
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(
          absl::StrCat("socket path '", socket_path, "' must be 1 to ",
                       sizeof(sockaddr_un::sun_path) - 1, " bytes long"));
    // No socket file, a stale one nobody listens on, or not a socket at all.
    case ENOENT:
    case ENOTDIR:
    case ECONNREFUSED:
      return DaemonNotRunningError(socket_path);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(absl::StrCat(
          "no permission to connect to procwarpd at ", socket_path,
          " (the socket's owner or group must include you; or set ",
          kSocketPathEnvVar, " to a daemon you may use)"));
    case EAGAIN:
      return absl::UnavailableError(absl::StrCat(
          "procwarpd at ", socket_path,
          " did not accept the connection: its listen backlog stayed full"));
    default:
      return absl::UnavailableError(absl::StrCat(
          "connect(", socket_path, ") failed: ", strerror(error)));
  }
}

absl::Status ProbeSocket(const std::string& socket_path) {
  int error = 0;
  UniqueFd fd = ConnectUnixSocket(socket_path, kProbeTimeout, &error);
  if (fd.valid()) return absl::OkStatus();
  return DaemonConnectError(socket_path, error);
}

}  // namespace procwarp
