// The procwarp CLI's subcommands. Each connects to the daemon, does its one
// job and returns the process exit code for the CLI, or an error that main()
// prints as "procwarp: <message>" with exit code 1.
#ifndef PROCWARP_CLIENT_CLI_COMMANDS_H_
#define PROCWARP_CLIENT_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace procwarp::cli {

// Options every subcommand understands.
struct GlobalOptions {
  // Empty: the client library's default socket path.
  std::string socket_path;
  // A remote daemon (client/cli/target.h): --host HOST:PORT with --ca,
  // --cert, --key, or a named --context; each falls back to PROCWARP_HOST,
  // PROCWARP_CA, PROCWARP_CERT, PROCWARP_KEY, PROCWARP_CONTEXT and then
  // ~/.config/procwarp/config.
  std::string host;
  std::string ca;
  std::string cert;
  std::string key;
  std::string context;
  // Print response protos as JSON instead of text.
  bool json = false;
};

struct RunOptions {
  std::vector<std::string> argv;
  // "NAME=value", or "NAME" to copy NAME from the CLI's environment.
  std::vector<std::string> env;
  bool inherit_env = false;
  std::string cwd;
  std::string name;
  bool detach = false;
  bool tty = false;
};

// `procwarp run`'s exit code when the daemon went away while it ran the
// process in the foreground and no restarted daemon took it back within
// kReconnectWindow (see README, "What survives a daemon restart").
inline constexpr int kDaemonLostExitCode = 125;

absl::StatusOr<int> RunStatus(const GlobalOptions& global);
absl::StatusOr<int> RunRun(const GlobalOptions& global,
                           const RunOptions& options);
absl::StatusOr<int> RunPs(const GlobalOptions& global, bool all);
absl::StatusOr<int> RunAttach(const GlobalOptions& global,
                              const std::string& id, bool no_stdin);
absl::StatusOr<int> RunKill(const GlobalOptions& global, const std::string& id,
                            const std::string& signal);
absl::StatusOr<int> RunWait(const GlobalOptions& global,
                            const std::string& id);
absl::StatusOr<int> RunRm(const GlobalOptions& global,
                          const std::vector<std::string>& ids, bool force);
absl::StatusOr<int> RunEvents(const GlobalOptions& global);

// The child's environment for `run`: the CLI's own environment when
// `inherit_env`, then each of `assignments` ("NAME=value" sets, "NAME"
// copies NAME from `own_env` if it is there) replacing any earlier NAME.
absl::StatusOr<std::vector<std::string>> BuildChildEnv(
    const std::vector<std::string>& assignments, bool inherit_env,
    const std::vector<std::string>& own_env);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_COMMANDS_H_
