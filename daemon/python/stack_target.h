// FindStackTarget: which Python a process runs and where its interpreter
// is, told from the target's ELF objects and memory alone (no code runs in
// it, its argv is never believed): the object holding _PyRuntime (a
// libpython3.N.so or the executable itself, as Debian's static python3),
// the version (Py_Version, 3.11+; else the libpython's name), the layout for
// that version (layout.h; 3.13's own _Py_DebugOffsets applied), PyCode_Type
// (every code object the reader trusts must carry it) and glibc's offset of
// a thread's kernel tid in struct pthread (its _thread_db_pthread_tid
// descriptor, for 3.8-3.10 whose thread states hold only the pthread_t).
//
// Symbol offsets are cached per ELF file (device, inode), so only the first
// snapshot of a given interpreter parses its symbol tables.
//
// This is read-only detection for snapshots; Exec.RunPython has its own in
// daemon/python/interpreter.h (docs/python.md says how they relate).
#ifndef PROCWARP_DAEMON_PYTHON_STACK_TARGET_H_
#define PROCWARP_DAEMON_PYTHON_STACK_TARGET_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "daemon/python/stack_memory.h"
#include "daemon/python/stack_reader.h"

namespace procwarp::python {

struct StackTarget {
  std::string implementation;  // "CPython"
  std::string version;         // "3.11.2"; "3.9" where only the minor is known
  std::string object;          // the ELF object holding _PyRuntime
  InterpreterAddresses where;
};

// FAILED_PRECONDITION names what was found when it is not a CPython 3.8-3.13
// (PyPy, Python 2.7, 3.6, 3.7, a program with no Python at all).
absl::StatusOr<StackTarget> FindStackTarget(pid_t pid, StackMemory& memory);

// "3.11.2", "3.13.0rc1" from a PY_VERSION_HEX value.
std::string VersionFromHex(uint32_t hexversion);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_STACK_TARGET_H_
