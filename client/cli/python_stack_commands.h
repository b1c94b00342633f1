// `procwarp py stack PID`: every Python thread's frames in a running
// CPython, read by procwarpd from its memory (Snapshots.PythonStack;
// docs/python.md, "Stack snapshots"). Same contract as commands.h: returns
// the CLI's exit code, or an error main() prints.
#ifndef PROCWARP_CLIENT_CLI_PYTHON_STACK_COMMANDS_H_
#define PROCWARP_CLIENT_CLI_PYTHON_STACK_COMMANDS_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/cli/commands.h"
#include "proto/procwarp/snapshots/v1/snapshots.pb.h"

namespace procwarp::cli {

struct PyStackOptions {
  std::string pid;
  bool locals = false;      // --locals
  bool consistent = false;  // --consistent: stop the target for the read
  bool native = false;      // --native
  bool repr = false;        // --repr: full reprs through remote exec
};

absl::StatusOr<int> RunPyStack(const GlobalOptions& global, const PyStackOptions& options);

// The human form, like `py-spy dump`: a header naming the interpreter, then
// per thread a line (tid, name, GIL, idle) and its frames outermost first,
// innermost last, as a traceback prints them, with arguments and locals
// under each frame. Every string from the target is escaped for the
// terminal; `colour` adds ANSI colours (only when stdout is a terminal).
std::string FormatPythonStack(int pid, const snapshots::v1::PythonStackResponse& stack,
                              bool colour);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_PYTHON_STACK_COMMANDS_H_
