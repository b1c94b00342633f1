// Which process a client accepts at the other end of the daemon's sockets,
// checked with SO_PEERCRED before the client sends a single byte: the main
// gRPC socket, and the fd side socket that ExportFd/ImportFd use. The rule
// itself is documented in client.h ("Which daemon a Client talks to").
#ifndef PROCWARP_CLIENT_CC_DAEMON_PEER_H_
#define PROCWARP_CLIENT_CC_DAEMON_PEER_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

// Environment variable naming one more uid the client trusts to serve the
// daemon's socket (a decimal uid).
inline constexpr char kDaemonUidEnvVar[] = "PROCWARP_DAEMON_UID";

// What SO_PEERCRED says about the process at the other end of a unix socket:
// for a client, the process that called listen() on the server's socket.
struct PeerCredentials {
  pid_t pid = 0;  // 0 when the peer is in a pid namespace we cannot see into
  uid_t uid = 0;
  gid_t gid = 0;
};

// SO_PEERCRED of connected unix socket `fd`; `path` only names it in errors.
absl::StatusOr<PeerCredentials> GetPeerCredentials(int fd,
                                                   absl::string_view path);

// The inputs of the trust rule, separated from the real process so the rule
// can be tested.
struct DaemonTrust {
  // The caller's real, effective and saved uids.
  uid_t ruid = 0;
  uid_t euid = 0;
  uid_t suid = 0;
  // One more uid the caller trusts (ConnectOptions::daemon_uid, else
  // $PROCWARP_DAEMON_UID).
  std::optional<uid_t> daemon_uid;

  // This process's uids, and `daemon_uid` if given, else
  // $PROCWARP_DAEMON_UID (read with secure_getenv, so a setuid program does
  // not take it from its invoker). INVALID_ARGUMENT when the variable is set
  // but is not a uid.
  static absl::StatusOr<DaemonTrust> ForThisProcess(
      std::optional<uid_t> daemon_uid);
};

// `text` as a uid: a decimal number other than (uid_t)-1. `what` names the
// source in the error ("PROCWARP_DAEMON_UID").
absl::StatusOr<uid_t> ParseUid(absl::string_view text, absl::string_view what);

// OK when `peer` may serve the daemon's socket at `socket_path` for a caller
// described by `trust` (root; the caller's own uid when its real, effective
// and saved uids agree; trust.daemon_uid). Otherwise PERMISSION_DENIED that
// names the socket, the peer's uid, pid and command, and how to trust it.
absl::Status CheckDaemonPeer(const PeerCredentials& peer,
                             const DaemonTrust& trust,
                             absl::string_view socket_path);

// A connected unix socket whose peer passed CheckDaemonPeer.
struct DaemonSocket {
  UniqueFd fd;
  PeerCredentials peer;
};

// Connects to `socket_path` (see ConnectUnixSocket in socket_path.h for the
// errors a person fixes differently; a listener whose backlog stays full for
// `timeout` gives UNAVAILABLE) and checks the peer against `trust`. Nothing
// has been written to the socket when this returns.
absl::StatusOr<DaemonSocket> ConnectToDaemon(const std::string& socket_path,
                                             const DaemonTrust& trust,
                                             absl::Duration timeout);

// Where to connect for the fd side socket the daemon named `reported`, given
// the main socket the client connected to at `main_path`: always
// `main_path` + ".fds". `reported` is accepted only if it names that socket:
// its file name is the main socket's file name + ".fds" and its directory is
// the main socket's directory (the same directory inode, so another spelling
// of it, e.g. through a symlink or as an absolute path for a relative
// `main_path`, is fine). Otherwise PERMISSION_DENIED.
absl::StatusOr<std::string> SideSocketPath(const std::string& main_path,
                                           const std::string& reported);

// Connects to the side socket SideSocketPath(main_path, reported) and checks
// that the process serving it has uid `daemon_uid` (the main socket's peer).
// Nothing has been written to the socket when this returns.
absl::StatusOr<UniqueFd> ConnectToSideSocket(const std::string& main_path,
                                             uid_t daemon_uid,
                                             const std::string& reported,
                                             absl::Duration timeout);

}  // namespace procwarp

#endif  // PROCWARP_CLIENT_CC_DAEMON_PEER_H_
