// `procwarp py exec`: Python source run inside a live CPython process
// (Exec.RunPython; docs/python.md). Same contract as commands.h: returns the
// CLI's exit code, or an error main() prints.
#ifndef PROCWARP_CLIENT_CLI_PYTHON_COMMANDS_H_
#define PROCWARP_CLIENT_CLI_PYTHON_COMMANDS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "client/cli/commands.h"
#include "proto/procwarp/exec/v1/exec.pb.h"

namespace procwarp::cli {

struct PyExecOptions {
  std::string pid;
  std::optional<std::string> code;  // -c
  std::optional<std::string> file;  // -f ("-": stdin)
  bool eval = false;
  std::optional<double> timeout_seconds;
  bool main_thread = false;
  bool no_wait = false;
  bool override_opt_out = false;
};

// Exit code when the code raised (the traceback is on stderr).
inline constexpr int kPythonRaisedExitCode = 1;

// Runs the code and prints what it printed (its stdout on stdout, its stderr
// on stderr), then the value's repr in eval mode, or the traceback on
// stderr (exit kPythonRaisedExitCode). --no-wait prints "queued". Output the
// target produced is escaped on a terminal (it is the target's, untrusted).
absl::StatusOr<int> RunPyExec(const GlobalOptions& global, const PyExecOptions& options);

// The request for `options` (reads -f FILE). INVALID_ARGUMENT for neither
// or both of -c/-f, a bad pid or timeout.
absl::StatusOr<exec::v1::RunPythonRequest> PyExecRequest(const PyExecOptions& options);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_PYTHON_COMMANDS_H_
