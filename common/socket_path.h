// Where procwarpd listens when told nothing else: one rule, shared by the
// daemon (where it binds) and its clients (where they look).
#ifndef PROCWARP_COMMON_SOCKET_PATH_H_
#define PROCWARP_COMMON_SOCKET_PATH_H_

#include <sys/types.h>

#include <optional>
#include <string>

namespace procwarp {

// The system daemon's socket.
inline constexpr char kSystemSocketPath[] = "/run/procwarp/procwarpd.sock";

// kSystemSocketPath for root (euid 0); for anyone else
// $XDG_RUNTIME_DIR/procwarp/procwarpd.sock, where an unset or empty
// XDG_RUNTIME_DIR means /run/user/<euid> (what pam_systemd would have set).
std::string StandardSocketPath(uid_t euid,
                               const std::optional<std::string>& xdg_runtime_dir);

// StandardSocketPath() for this process's euid and environment.
std::string StandardSocketPath();

}  // namespace procwarp

#endif  // PROCWARP_COMMON_SOCKET_PATH_H_
