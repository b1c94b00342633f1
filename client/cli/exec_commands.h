// The Exec subcommands: `procwarp call`, `inject`, `uninject` and `doctor`
// (remote calls and library injection in processes procwarp did not spawn;
// docs/attach.md). Same contract as commands.h: each returns the CLI's exit
// code, or an error main() prints.
#ifndef PROCWARP_CLIENT_CLI_EXEC_COMMANDS_H_
#define PROCWARP_CLIENT_CLI_EXEC_COMMANDS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/commands.h"
#include "proto/procwarp/exec/v1/exec.pb.h"

namespace procwarp::cli {

// Exit code of `call` when the called function crashed (the target was put
// back and runs on).
inline constexpr int kCallCrashedExitCode = 2;

// Calls `function` in process `pid` with integer `args` (decimal, possibly
// negative, or 0x hex) and prints the return value (rax) as an unsigned
// decimal number. A crash in the callee prints what happened and exits
// kCallCrashedExitCode.
absl::StatusOr<int> RunCall(const GlobalOptions& global, const std::string& pid,
                            const std::string& function,
                            const std::vector<std::string>& args);

// Loads `library` (made absolute against the current directory) into
// process `pid` and prints the handle for `uninject`.
absl::StatusOr<int> RunInject(const GlobalOptions& global,
                              const std::string& pid,
                              const std::string& library);

// Unloads what `inject` loaded.
absl::StatusOr<int> RunUninject(const GlobalOptions& global,
                                const std::string& handle);

// The preflight: the daemon's side and, with a pid, the target's. Exit 0
// whatever it found (the report is the result).
absl::StatusOr<int> RunDoctor(const GlobalOptions& global,
                              const std::optional<std::string>& pid);

// A process id as typed: a positive decimal number.
absl::StatusOr<int> ParsePid(const std::string& text);

// The human form of `doctor`: one line per check ("ok", "warn", "FAIL",
// "info", its name, its detail; the fix indented below a failure), the
// target's facts, and what will work.
std::string FormatPreflight(const exec::v1::PreflightResponse& preflight);

// The human form of a call's crash.
std::string FormatCrash(const exec::v1::Crash& crash);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_EXEC_COMMANDS_H_
