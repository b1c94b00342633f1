// See python_stack_commands.h.
#include "client/cli/python_stack_commands.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
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

// A repr as Python prints it: its backslashes are already escapes, so it is
// shown as is unless it holds something a terminal would act on.
std::string SafeRepr(const std::string& repr) {
  const std::string escaped = EscapeForTerminal(repr);
  return escaped == absl::StrReplaceAll(repr, {{"\\", "\\\\"}}) ? repr : escaped;
}

std::string FormatValue(const pb::PythonValue& value) {
  std::string out;
  if (!value.repr().empty()) {
    out = SafeRepr(value.repr());
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

// `text` as a JSON string literal, which is also a Python str literal.
std::string Quoted(absl::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

// The code RunPython runs for --repr: for each thread (by threading ident)
// it walks that thread's frames outermost first, stops where they no longer
// match the snapshot (the code's own frames sit on top of whichever thread
// runs it), and prints a JSON object "ident/frame/name" -> repr(value),
// each cut to 4096 characters; a __repr__ that raises is reported, not
// propagated.
std::string ReprCode(const pb::PythonStackResponse& stack) {
  std::string spec = "[";
  for (const pb::PythonThread& thread : stack.threads()) {
    absl::StrAppend(&spec, "[", thread.thread_ident(), ", [");
    for (const pb::PythonFrame& frame : thread.frames()) {
      absl::StrAppend(&spec, "[", Quoted(frame.function()), ", [");
      for (const pb::PythonLocal& local : frame.locals()) {
        absl::StrAppend(&spec, Quoted(local.name()), ", ");
      }
      absl::StrAppend(&spec, "]], ");
    }
    absl::StrAppend(&spec, "]], ");
  }
  spec += "]";
  return absl::StrCat(R"(import sys as _s, json as _j
def _procwarp_reprs(spec):
    out = {}
    frames = _s._current_frames()
    for ident, wanted in spec:
        f = frames.get(ident)
        chain = []
        while f is not None:
            chain.append(f)
            f = f.f_back
        chain.reverse()
        for i, (function, names) in enumerate(wanted):
            if i >= len(chain):
                break
            code = chain[i].f_code
            if getattr(code, 'co_qualname', code.co_name) != function:
                break
            values = chain[i].f_locals
            for name in names:
                if name in values:
                    try:
                        r = repr(values[name])
                    except BaseException as e:
                        r = '<repr failed: %s>' % type(e).__name__
                    out['%d/%d/%s' % (ident, i, name)] = r[:4096]
    _s.stdout.write(_j.dumps(out))
_procwarp_reprs()", spec, ")\n");
}

// Replaces each local's repr with the one RunPython sent back.
absl::Status FillReprs(const std::string& json, pb::PythonStackResponse* stack) {
  google::protobuf::Struct reprs;
  if (!google::protobuf::util::JsonStringToMessage(json, &reprs).ok()) {
    return absl::InternalError("--repr: the target's answer is not JSON");
  }
  const auto& fields = reprs.fields();
  for (pb::PythonThread& thread : *stack->mutable_threads()) {
    for (int i = 0; i < thread.frames_size(); ++i) {
      for (pb::PythonLocal& local : *thread.mutable_frames(i)->mutable_locals()) {
        auto it = fields.find(absl::StrCat(thread.thread_ident(), "/", i, "/", local.name()));
        if (it == fields.end() || !it->second.has_string_value()) continue;
        local.mutable_value()->set_repr(it->second.string_value());
        local.mutable_value()->set_truncated(it->second.string_value().size() >= 4096);
      }
    }
  }
  return absl::OkStatus();
}

// --repr: every local's full repr, computed inside the target (RunPython).
absl::Status AddFullReprs(const Client& client, int pid, pb::PythonStackResponse* stack) {
  exec::v1::RunPythonRequest request;
  request.mutable_target()->set_pid(pid);
  request.set_mode(exec::v1::PYTHON_MODE_EXEC);
  request.set_code(ReprCode(*stack));
  absl::StatusOr<exec::v1::RunPythonResponse> ran = client.RunPython(request);
  if (!ran.ok()) {
    return absl::Status(ran.status().code(),
                        absl::StrCat("--repr (remote exec): ", ran.status().message()));
  }
  if (ran->has_exception()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--repr: the code that collects the reprs raised ", ran->exception().type(), ": ",
        ran->exception().message()));
  }
  return FillReprs(ran->stdout(), stack);
}

// One frame's line: "function (file:line)" for Python, and for a native
// frame "symbol+0x1c (object) [native]", or its address where no symbol
// covers it.
std::string FormatFrame(const pb::PythonFrame& frame, const Palette& c) {
  if (!frame.is_native()) {
    std::string out = absl::StrCat("    ", c.function, EscapeForTerminal(frame.function()),
                                   c.reset, " (", c.file, EscapeForTerminal(frame.file()),
                                   c.reset);
    if (frame.line() >= 0) absl::StrAppend(&out, ":", frame.line());
    return out + ")\n";
  }
  std::string out = absl::StrCat("    ", c.dim);
  if (frame.function().empty()) {
    absl::StrAppend(&out, "0x", absl::Hex(frame.native_address()));
  } else {
    absl::StrAppend(&out, EscapeForTerminal(frame.function()), "+0x",
                    absl::Hex(frame.native_symbol_offset()));
  }
  absl::StrAppend(&out, " (",
                  frame.file().empty() ? std::string("?") : EscapeForTerminal(frame.file()));
  if (frame.function().empty() && !frame.file().empty()) {
    absl::StrAppend(&out, "+0x", absl::Hex(frame.native_elf_address()));
  }
  return absl::StrCat(out, ") [native]", c.reset, "\n");
}

}  // namespace

std::string FormatPythonStack(int pid, const pb::PythonStackResponse& stack, bool colour) {
  const Palette c = Colours(colour);
  std::string out = absl::StrCat(
      "Process ", pid, ": ", EscapeForTerminal(stack.interpreter().implementation()), " ",
      EscapeForTerminal(stack.interpreter().version()), " (",
      EscapeForTerminal(stack.interpreter().object()), ")\n");
  for (const pb::PythonThread& thread : stack.threads()) {
    // As py-spy dump prints it: Thread 1234 (idle): "MainThread".
    absl::StrAppend(&out, "\n", c.thread, "Thread ",
                    thread.tid() != 0 ? absl::StrCat(thread.tid()) : std::string("?"), " (",
                    thread.idle() ? "idle" : "active", thread.holds_gil() ? "+gil" : "", ")");
    if (!thread.name().empty()) {
      absl::StrAppend(&out, ": \"", EscapeForTerminal(thread.name()), "\"");
    } else if (thread.is_main()) {
      absl::StrAppend(&out, ": (main)");
    }
    absl::StrAppend(&out, c.reset, "\n");
    if (thread.frames().empty()) absl::StrAppend(&out, "    ", c.dim, "(no Python frames)", c.reset, "\n");
    for (const pb::PythonFrame& frame : thread.frames()) {
      absl::StrAppend(&out, FormatFrame(frame, c));
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
    if (thread.native_stack() == pb::NATIVE_STACK_SEPARATE) {
      absl::StrAppend(&out, "  ", c.dim, "Native frames (not merged: ",
                      EscapeForTerminal(thread.native_note()), "):", c.reset, "\n");
      for (const pb::PythonFrame& frame : thread.native_frames()) {
        absl::StrAppend(&out, FormatFrame(frame, c));
      }
    } else if (thread.native_stack() == pb::NATIVE_STACK_UNAVAILABLE) {
      absl::StrAppend(&out, "  ", c.dim, "No native frames: ",
                      EscapeForTerminal(thread.native_note()), c.reset, "\n");
    } else if (!thread.native_note().empty()) {
      absl::StrAppend(&out, "  ", c.dim, EscapeForTerminal(thread.native_note()), c.reset,
                      "\n");
    }
  }
  return out;
}

absl::StatusOr<int> RunPyStack(const GlobalOptions& global, const PyStackOptions& options) {
  absl::StatusOr<int> pid = ParsePid(options.pid);
  if (!pid.ok()) return pid.status();
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  pb::PythonStackRequest request;
  request.set_pid(*pid);
  request.set_locals(options.locals);
  request.set_consistent(options.consistent);
  request.set_native(options.native);
  // --repr needs the locals' names to ask for.
  if (options.repr) request.set_locals(true);
  absl::StatusOr<pb::PythonStackResponse> stack = client->PythonStack(request);
  if (!stack.ok()) return stack.status();
  if (options.repr) {
    if (absl::Status full = AddFullReprs(*client, *pid, &*stack); !full.ok()) return full;
  }
  if (global.json) {
    if (absl::Status printed = PrintJson(*stack); !printed.ok()) return printed;
  } else {
    std::cout << FormatPythonStack(*pid, *stack, WantColour());
  }
  return 0;
}

}  // namespace procwarp::cli
