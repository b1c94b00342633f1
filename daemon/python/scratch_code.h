// Placing generated code in a target's scratch mapping: what the blocked
// safe point's trampoline (trampoline.h) and PyPy's new-thread stub (pypy.h)
// both do with the target stopped (docs/python.md, "Safe points").
#ifndef PROCWARP_DAEMON_PYTHON_SCRATCH_CODE_H_
#define PROCWARP_DAEMON_PYTHON_SCRATCH_CODE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/ptrace/operation.h"

namespace procwarp::python {

// Writes `bytes` at `addr` in the stopped target.
absl::Status WriteBytes(ptrace::Operation& op, uint64_t addr, absl::string_view bytes);

// Makes the `size` bytes of code at `page`, written while they were
// read-write, read and execute (never writable and executable at once).
// FAILED_PRECONDITION when the target refuses executable memory (its
// mprotect's errno named).
absl::Status SealCode(ptrace::Operation& op, uint64_t page, uint64_t size);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_SCRATCH_CODE_H_
