// See python_stack_commands.h.
#include "client/cli/python_stack_commands.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "client/cli/exec_commands.h"
#include "client/cli/output.h"
#include "client/cli/target.h"

namespace procwarp::cli {
namespace {

namespace pb = snapshots::v1;

// ANSI colours, or nothing.
struct Palette {
  const char* thread = "";
  const char* function = "";
  const char* file = "";
  const char* dim = "";
  const char* reset = "";
};

Palette Colours(bool colour) {
  if (!colour) return {};
  return {"\x1b[1m", "\x1b[32m", "\x1b[36m", "\x1b[2m", "\x1b[0m"};
}

// NO_COLOR (no-color.org) and TERM=dumb turn colour off; so does a pipe.
bool WantColour() {
  if (!isatty(STDOUT_FILENO) || getenv("NO_COLOR") != nullptr) return false;
  const char* term = getenv("TERM");
  return term != nullptr && std::string(term) != "dumb";
}

std::string FormatValue(const pb::PythonValue& value) {
  std::string out;
  if (!value.repr().empty()) {
    out = EscapeForTerminal(value.repr());
    if (value.truncated()) out += "...";
    if (value.type() == "str" || value.type() == "bytes" || value.has_length()) {
      // The repr says the type of the plain values; say it for the rest.
      if (value.type() != "int" && value.type() != "float" && value.type() != "bool" &&
          value.type() != "NoneType" && value.has_length() && value.truncated()) {
        absl::StrAppend(&out, " (len ", value.length(), ")");
      }
    }
    return out;
  }
  out = absl::StrCat("<", EscapeForTerminal(value.type()));
  if (value.has_length()) absl::StrAppend(&out, " of length ", value.length());
  absl::StrAppend(&out, " at 0x", absl::Hex(value.address()), ">");
  return out;
}

}  // namespace

std::string FormatPythonStack(int pid, const pb::PythonStackResponse& stack, bool colour) {
  const Palette c = Colours(colour);
  std::string out = absl::StrCat(
      "Process ", pid, ": ", EscapeForTerminal(stack.interpreter().implementation()), " ",
      EscapeForTerminal(stack.interpreter().version()), " (",
      EscapeForTerminal(stack.interpreter().object()), ")\n");
  for (const pb::PythonThread& thread : stack.threads()) {
    absl::StrAppend(&out, "\n", c.thread, "Thread ",
                    thread.tid() != 0 ? absl::StrCat(thread.tid()) : std::string("?"));
    if (!thread.name().empty()) {
      absl::StrAppend(&out, " \"", EscapeForTerminal(thread.name()), "\"");
    } else if (thread.is_main()) {
      absl::StrAppend(&out, " (main)");
    }
    absl::StrAppend(&out, c.reset, " (", thread.idle() ? "idle" : "active",
                    thread.holds_gil() ? "+gil" : "", ")\n");
    if (thread.frames().empty()) absl::StrAppend(&out, "    ", c.dim, "(no Python frames)", c.reset, "\n");
    for (const pb::PythonFrame& frame : thread.frames()) {
      absl::StrAppend(&out, "    ", c.function, EscapeForTerminal(frame.function()), c.reset,
                      " (", c.file, EscapeForTerminal(frame.file()), c.reset);
      if (frame.line() >= 0) absl::StrAppend(&out, ":", frame.line());
      absl::StrAppend(&out, ")\n");
      bool arguments = false, locals = false;
      for (const pb::PythonLocal& local : frame.locals()) {
        if (local.is_argument() && !arguments) {
          absl::StrAppend(&out, "        ", c.dim, "Arguments:", c.reset, "\n");
          arguments = true;
        }
        if (!local.is_argument() && !locals) {
          absl::StrAppend(&out, "        ", c.dim, "Locals:", c.reset, "\n");
          locals = true;
        }
        absl::StrAppend(&out, "            ", EscapeForTerminal(local.name()), ": ",
                        FormatValue(local.value()), "\n");
      }
    }
  }
  return out;
}

absl::StatusOr<int> RunPyStack(const GlobalOptions& global, const PyStackOptions& options) {
  absl::StatusOr<int> pid = ParsePid(options.pid);
  if (!pid.ok()) return pid.status();
  if (options.repr) {
    return absl::UnimplementedError(
        "--repr needs remote exec (Exec.RunPython), which this build does not "
        "have yet; without it, values are shown for int, float, str, bytes, "
        "bool and None");
  }
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  pb::PythonStackRequest request;
  request.set_pid(*pid);
  request.set_locals(options.locals);
  request.set_consistent(options.consistent);
  request.set_native(options.native);
  absl::StatusOr<pb::PythonStackResponse> stack = client->PythonStack(request);
  if (!stack.ok()) return stack.status();
  if (global.json) {
    if (absl::Status printed = PrintJson(*stack); !printed.ok()) return printed;
  } else {
    std::cout << FormatPythonStack(*pid, *stack, WantColour());
  }
  return 0;
}

}  // namespace procwarp::cli
