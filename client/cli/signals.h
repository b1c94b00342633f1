// Signal names and numbers as the CLI accepts and prints them.
#ifndef PROCWARP_CLIENT_CLI_SIGNALS_H_
#define PROCWARP_CLIENT_CLI_SIGNALS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace procwarp::cli {

// Parses a signal given as a number ("9") or a name with or without the SIG
// prefix, in any case ("KILL", "SIGKILL", "term"). INVALID_ARGUMENT
// otherwise.
absl::StatusOr<int> ParseSignal(absl::string_view text);

// "SIGKILL" for 9; "SIG<n>" for signals without a name (real-time ones).
std::string SignalName(int signal);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_SIGNALS_H_
