// The keeper: a small process that holds what a managed process needs to
// outlive the daemon that spawned it, when systemd's fd store is not there
// to hold it (docs/architecture.md, "Restart without loss").
//
// Every daemon generation started with a state directory runs under its own
// keeper: the process that was started (by tools/start.sh, a test, a shell)
// becomes the keeper and forks the daemon, so the keeper is the daemon's
// parent and a child subreaper. That is what makes it the right holder:
//  - when the daemon dies, its managed children are reparented to the
//    keeper, which reaps them and keeps their exit status for the next
//    daemon (only a parent can learn how a process ended);
//  - it holds duplicates of each managed process's pidfd and stdio ends
//    (pipe ends, pty master), so the children never see EOF, SIGPIPE or a
//    hang-up while no daemon runs, and their output waits in the pipe;
//  - it hands them back over a unix socket (SOCK_SEQPACKET, SCM_RIGHTS) at
//    <state dir>/keeper-<pid>.sock, to any later daemon of the same uid.
// A keeper whose daemon is gone stays as long as it holds anything; it exits
// once every process it held has been dropped by a daemon (removed, or
// exited and recorded). SIGTERM to the keeper is passed to its daemon.
//
// The keeper runs no threads and trusts only connections from its own uid
// on a socket in the root-only state directory.
#ifndef PROCWARP_DAEMON_RESTART_KEEPER_H_
#define PROCWARP_DAEMON_RESTART_KEEPER_H_

#include <string>

#include <vector>

#include "absl/status/statusor.h"
#include "daemon/util/unique_fd.h"
#include "google/protobuf/message_lite.h"

namespace procwarp {

// The prefix and suffix of keeper socket names in the state directory.
inline constexpr char kKeeperSocketPrefix[] = "keeper-";
inline constexpr char kKeeperSocketSuffix[] = ".sock";

// The keeper protocol's framing (messages in proto/procwarp/state/v1/
// state.proto): one message per SOCK_SEQPACKET packet, its fds riding on it.
// Send: false when the peer is gone. Receive: false at EOF, on an error or
// on a message that does not decode; `fds` gets what came with it.
bool SendKeeperMessage(int socket, const google::protobuf::MessageLite& message,
                       const std::vector<int>& fds);
bool ReceiveKeeperMessage(int socket, google::protobuf::MessageLite* message,
                          std::vector<UniqueFd>* fds);

// Forks. The parent becomes the keeper for `state_dir` and never returns
// (it exits when its work is done, with the daemon's exit code); the child,
// the daemon, gets its end of the link to the keeper.
// Precondition: the process has no other threads yet (fork copies one).
absl::StatusOr<UniqueFd> ForkUnderKeeper(const std::string& state_dir);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_RESTART_KEEPER_H_
