// Which daemon a CLI command talks to, and how: the unix socket, or a remote
// host over mutual TLS (docs/remote.md). Each setting comes from the first
// of: its flag (--socket, --host, --ca, --cert, --key), its environment
// variable (PROCWARP_HOST, PROCWARP_CA, PROCWARP_CERT, PROCWARP_KEY), the
// chosen context of ~/.config/procwarp/config (--context NAME, else
// PROCWARP_CONTEXT, else the file's current_context). --socket on the
// command line means the local daemon whatever the environment says.
#ifndef PROCWARP_CLIENT_CLI_TARGET_H_
#define PROCWARP_CLIENT_CLI_TARGET_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "client/cc/client.h"
#include "client/cli/commands.h"

namespace procwarp::cli {

struct Target {
  std::string socket_path;  // local (empty: the library's default)
  std::string host;         // remote when non-empty: HOST:PORT
  TlsOptions tls;
  std::string context;      // the context used, if any
};

// Reads an environment variable (getenv in production, a map in tests).
using EnvLookup = std::function<const char*(const char*)>;

// $XDG_CONFIG_HOME/procwarp/config, else $HOME/.config/procwarp/config.
std::string DefaultCliConfigPath(const EnvLookup& env);

// Settings from `flags`, `env` and the config file at `config_path` (which
// may not exist unless a context is asked for). INVALID_ARGUMENT for an
// unreadable or malformed file, NOT_FOUND for an unknown context.
absl::StatusOr<Target> ResolveTarget(const GlobalOptions& flags,
                                     const EnvLookup& env,
                                     const std::string& config_path);

// ResolveTarget with the real environment, then Client::Connect.
absl::StatusOr<Client> ConnectClient(const GlobalOptions& global);

// The context ConnectClient would use (for `status`), or "".
std::string ChosenContext(const GlobalOptions& global);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_TARGET_H_
