// MergeNativeFrames: one thread's native and Python frames as one stack, as
// py-spy --native shows them: each C frame of CPython's evaluation loop
// (_PyEval_EvalFrameDefault) is replaced by the Python frames that call runs
// (one frame up to 3.10; on 3.11+ a Python-to-Python call stays inside the
// C call, so one C frame runs several Python frames: stack_reader.h's
// EvalEntries says where each call's frames start).
//
// Merging is reliable only when the two stacks were taken at the same
// moment (every thread stopped) and the native unwind found exactly one
// evaluation-loop frame per C call the Python frames say there are; anything
// else (a stripped interpreter whose loop has no symbol, an unwind that
// stopped early, a call that has not pushed its frame yet) is refused with
// the reason, and the caller returns the two lists side by side
// (docs/python.md, "Native frames").
#ifndef PROCWARP_DAEMON_PYTHON_NATIVE_MERGE_H_
#define PROCWARP_DAEMON_PYTHON_NATIVE_MERGE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/python/stack_reader.h"
#include "proto/procwarp/snapshots/v1/snapshots.pb.h"

namespace procwarp::python {

// Whether native symbol `symbol` is CPython's evaluation loop (gcc's split
// parts of it, "_PyEval_EvalFrameDefault.cold", included).
bool IsEvalLoop(absl::string_view symbol);

// `python`: the thread's Python frames, outermost first, with `entries`
// from the same read; `native`: its native frames, outermost first. The
// merged stack, outermost first; FAILED_PRECONDITION saying why when the
// two do not match.
absl::StatusOr<std::vector<snapshots::v1::PythonFrame>> MergeNativeFrames(
    const std::vector<snapshots::v1::PythonFrame>& python, const EvalEntries& entries,
    const std::vector<snapshots::v1::PythonFrame>& native);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_NATIVE_MERGE_H_
