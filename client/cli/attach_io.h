// Connects the CLI's own stdin/stdout/stderr and signals to a process's
// Attach stream: the foreground half of `procwarp run` and `procwarp attach`.
#ifndef PROCWARP_CLIENT_CLI_ATTACH_IO_H_
#define PROCWARP_CLIENT_CLI_ATTACH_IO_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cc/client.h"

namespace procwarp::cli {

// Blocks the signals RunAttached forwards (INT, TERM, HUP, QUIT, WINCH) so
// that it can receive them through a signalfd. Must be called before any
// thread exists, i.e. before Client::Connect starts gRPC's threads, so that
// every thread inherits the mask and none of them dies of these signals.
absl::Status BlockForwardedSignals();

struct AttachIoOptions {
  // Send the CLI's stdin to the process, then close its stdin at EOF.
  bool forward_stdin = true;
  // The process has a pty: put a local terminal in raw mode, send the local
  // window size now and whenever it changes.
  bool pty = false;
  // Skip output the daemon buffered before the attach.
  bool no_replay = false;
  // SIGTERM and SIGHUP go to the process (`run`: the CLI stands for it, as
  // `docker run` does). Otherwise (`attach`) they end the attachment and
  // the process runs on; SIGINT and SIGQUIT are forwarded either way.
  bool forward_termination = true;
};

// What RunAttached returns when the CLI was told to stop (SIGTERM, SIGHUP)
// while attached without forward_termination: 128 + the signal.
inline constexpr int kDetachedBySignalBase = 128;

// Attaches to `process` and runs until it exits: its stdout goes to our
// stdout, its stderr to our stderr, our stdin to its stdin. INT/QUIT (and
// TERM/HUP with forward_termination) received meanwhile are sent to the
// process; when our stdout is a closed pipe, the process gets SIGPIPE.
// Returns the shell exit code (the code, or 128 + signal), or an error if the
// stream failed first (UNAVAILABLE: the daemon went away).
// Precondition: BlockForwardedSignals() was called.
absl::StatusOr<int> RunAttached(Process& process,
                                const AttachIoOptions& options);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_ATTACH_IO_H_
