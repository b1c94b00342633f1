// Default socket path resolution and the pre-gRPC reachability probe.
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

// Owns one socket fd for the duration of the probe.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

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

absl::Status ProbeSocket(const std::string& socket_path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path '", socket_path, "' must be 1 to ",
                     sizeof(address.sun_path) - 1, " bytes long"));
  }
  memcpy(address.sun_path, socket_path.data(), socket_path.size());

  ScopedFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return absl::InternalError(
        absl::StrCat("socket(AF_UNIX, SOCK_STREAM) failed: ", strerror(errno)));
  }
  int result;
  do {
    result = connect(fd.get(), reinterpret_cast<const sockaddr*>(&address),
                     sizeof(address));
  } while (result < 0 && errno == EINTR);
  if (result == 0) return absl::OkStatus();

  const int error = errno;
  switch (error) {
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
    default:
      return absl::UnavailableError(absl::StrCat(
          "connect(", socket_path, ") failed: ", strerror(error)));
  }
}

}  // namespace procwarp
