// ReadPythonStacks: every Python thread's frames (and, on request, their
// locals) of one CPython interpreter, read from the target's memory through
// a StackMemory, with the layout of its version (layout.h). Nothing runs in
// the target and nothing here stops it: the caller detects torn reads by
// reading the frame chain again and comparing signatures (ReadStacksConsistent
// does it, with bounded retries).
//
// Everything read is the target owner's data: every count, length and
// pointer is bounded before use (Limits), every code object must carry
// PyCode_Type, and a chain that does not end within the limits is reported
// as torn (ABORTED), never followed further.
#ifndef PROCWARP_DAEMON_PYTHON_STACK_READER_H_
#define PROCWARP_DAEMON_PYTHON_STACK_READER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/python/layout.h"
#include "daemon/python/stack_memory.h"
#include "proto/procwarp/snapshots/v1/snapshots.pb.h"

namespace procwarp::python {

// Where the interpreter is in the target (stack_target.h finds it).
struct InterpreterAddresses {
  CPythonLayout layout;
  uint64_t runtime = 0;            // &_PyRuntime
  uint64_t code_type = 0;          // &PyCode_Type
  int64_t pthread_tid_offset = -1;  // glibc's offsetof(struct pthread, tid)
};

struct StackLimits {
  int max_interpreters = 16;
  int max_threads = 512;
  int max_frames = 4096;  // per thread (CPython's default recursion limit is 1000)
  int max_locals = 512;   // per frame
  int max_string = 256;   // code points (str) or bytes (bytes) shown
  int max_int_digits = 200;  // PyLong digits of 30 bits (~1800 decimal digits)
  int attempts = 16;      // reads before a stack that keeps changing is ABORTED
  int max_native_frames = 2048;  // per thread (native=true)
};

// Per frame of a thread (outermost first): whether it is the first frame a
// C call of the evaluation loop (_PyEval_EvalFrameDefault) runs. Up to 3.10
// every frame is; 3.11+ run Python-to-Python calls inside one C call
// (3.11 marks the first with is_entry, 3.12+ push a shim frame under it).
// What native_merge.h needs to put Python frames in place of C ones.
using EvalEntries = std::vector<bool>;

// One pass. `threads` gets one entry per Python thread state (tid filled in
// where the layout tells it, 0 otherwise; idle left to the caller), frames
// outermost first. `signature` gets the shape of what was read (thread
// states, frames, code objects) to compare with a later pass. `entries`
// (optional) gets one EvalEntries per thread, in the order of `threads`.
absl::Status ReadPythonStacks(StackMemory& memory, const InterpreterAddresses& where,
                              bool locals, const StackLimits& limits,
                              std::vector<snapshots::v1::PythonThread>* threads,
                              std::vector<uint64_t>* signature,
                              std::vector<EvalEntries>* entries = nullptr);

// Reads until two passes in a row agree on the signature (the target did not
// change its frame chains in between), at most limits.attempts times; then
// ABORTED. A pass that fails on a stale pointer or a torn object counts as
// one attempt; NOT_FOUND (the target is gone) ends at once. `retries` gets
// the number of passes thrown away. `entries` as for ReadPythonStacks.
absl::Status ReadStacksConsistent(StackMemory& memory, const InterpreterAddresses& where,
                                  bool locals, const StackLimits& limits,
                                  std::vector<snapshots::v1::PythonThread>* threads,
                                  int* retries, std::vector<EvalEntries>* entries = nullptr);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_STACK_READER_H_
