// Which Python a process runs, read from its ELF objects and memory (never
// from its argv), and whether it opted out of remote debugging
// (docs/python.md, "Finding the interpreter").
//
// - The interpreter object is the mapped ELF object that defines the C API:
//   `Py_AddPendingCall` for CPython (libpythonX.Y.so, or a static python
//   executable whose .dynsym exports it, like Debian's /usr/bin/python3),
//   `PyPyGILState_Ensure` for PyPy (libpypy3.9-c.so). Shared libraries named
//   libpython*/libpypy* and the main program are looked at first, then the
//   rest in load order (embedders).
// - The version: `Py_Version` (PY_VERSION_HEX, CPython 3.11+) read from the
//   target's memory; below 3.11 the static buffer behind Py_GetVersion()
//   (`version.0` in .symtab, filled while the interpreter initialised); else
//   the major.minor in the object's name (SONAME-style libpython3.8.so.1.0,
//   python3.9), which is part of the ELF object, not of argv.
// - The opt-out (PEP 768): PYTHON_DISABLE_REMOTE_DEBUG set (non-empty, as
//   CPython reads it) in the initial environment (/proc/PID/environ), or
//   `-X disable_remote_debug` (PyPy: `-X disable-remote-debug`) among the
//   interpreter's options in /proc/PID/cmdline. argv is only ever evidence
//   for opting *out*: a program can rewrite it, and a rewrite can only make
//   procwarp more careful.
//
// Everything read here is controlled by the target's owner; it decides only
// what is said about that target and is bounded.
#ifndef PROCWARP_DAEMON_PYTHON_INTERPRETER_H_
#define PROCWARP_DAEMON_PYTHON_INTERPRETER_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/ptrace/remote_memory.h"

namespace procwarp::python {

enum class Implementation { kCPython, kPyPy };

struct Interpreter {
  Implementation implementation = Implementation::kCPython;
  int major = 0;
  int minor = 0;
  int micro = -1;  // -1: not known (only major.minor were found)
  exec::LoadedObject object;

  // "3.11.2", or "3.8" when the micro version is unknown.
  std::string Version() const;
  // "CPython 3.11.2 (/usr/bin/python3.11)".
  std::string Describe() const;
  // The C-API name in this implementation: "PyGILState_Ensure" for CPython,
  // "PyPyGILState_Ensure" for PyPy ("Py_AddPendingCall" -> "PyPy_AddPendingCall").
  std::string CApi(absl::string_view cpython_name) const;
  // CPython 3.8 and newer (sys.audit, the pending-call API used here).
  bool IsCPythonAtLeast(int want_major, int want_minor) const;
};

// The interpreter of the process `symbols` describes. FAILED_PRECONDITION
// when no mapped object is a Python interpreter (naming what is mapped).
absl::StatusOr<Interpreter> FindInterpreter(const exec::SymbolResolver& symbols,
                                            ptrace::RemoteMemory& memory);

struct OptOut {
  bool opted_out = false;
  std::string evidence;  // "PYTHON_DISABLE_REMOTE_DEBUG=1 in its environment"
};

// Whether process `pid` opted out of remote debugging (see above).
OptOut ReadOptOut(pid_t pid);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_INTERPRETER_H_
