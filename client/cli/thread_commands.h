// The `procwarp thread ...` subcommands: create, list, poke at and end
// remote threads by hand. Same contract as commands.h: each returns the
// CLI's exit code, or an error main() prints.
#ifndef PROCWARP_CLIENT_CLI_THREAD_COMMANDS_H_
#define PROCWARP_CLIENT_CLI_THREAD_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cc/client.h"
#include "client/cli/commands.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp::cli {

struct ThreadCreateOptions {
  // Accepted for clarity: CLI threads are always persistent (see
  // RunThreadCreate).
  bool persistent = false;
  bool user_namespace = false;
  bool mount_namespace = false;
  bool pid_namespace = false;
  bool net_namespace = false;
  bool uts_namespace = false;
  bool ipc_namespace = false;
  std::string name;
};

// Creates a thread and prints its id. The thread is always persistent: the
// CLI's connection ends when it exits, which would end any other thread at
// once. `procwarp thread kill ID` ends it.
absl::StatusOr<int> RunThreadCreate(const GlobalOptions& global,
                                    const ThreadCreateOptions& options);
absl::StatusOr<int> RunThreadLs(const GlobalOptions& global, bool all);
// Runs one syscall (`syscall`: a name as strace prints it, or a number) with
// integer `args` and prints the result ("42" or "-1 EBADF (Bad file
// descriptor)"). Exit code 0 whenever the syscall ran, failed or not.
absl::StatusOr<int> RunThreadSyscall(const GlobalOptions& global,
                                     const std::string& id,
                                     const std::string& syscall,
                                     const std::vector<std::string>& args);
struct ThreadExecOptions {
  std::vector<std::string> argv;
  // "NAME=value", or "NAME" to copy NAME from the CLI's environment (as for
  // `run`); nothing else is inherited.
  std::vector<std::string> env;
  std::string name;
};
// execve() in the thread: it becomes a managed process (keeping the fds it
// has without close-on-exec as its stdio), left running; prints the process
// id for `procwarp wait/kill/rm`.
absl::StatusOr<int> RunThreadExec(const GlobalOptions& global,
                                  const std::string& id,
                                  const ThreadExecOptions& options);
// Ends the thread (ExitThread) and forgets it.
absl::StatusOr<int> RunThreadKill(const GlobalOptions& global,
                                  const std::string& id);

// The id in `threads` equal to `prefix`, else the only one starting with it.
// NOT_FOUND when none matches, INVALID_ARGUMENT when `prefix` is empty or
// several match.
absl::StatusOr<std::string> MatchThreadIdPrefix(
    absl::string_view prefix, const std::vector<v1::ThreadInfo>& threads);

// The `thread ls` table: ID (first 12 characters), PID, STATE, UID,
// PERSISTENT, NAMESPACES, NAME.
std::string FormatThreadTable(const std::vector<v1::ThreadInfo>& threads);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_THREAD_COMMANDS_H_
