// See native_merge.h.
#include "daemon/python/native_merge.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace procwarp::python {

namespace pb = snapshots::v1;

bool IsEvalLoop(absl::string_view symbol) {
  constexpr absl::string_view kLoop = "_PyEval_EvalFrameDefault";
  return symbol == kLoop || absl::StartsWith(symbol, absl::StrCat(kLoop, "."));
}

absl::StatusOr<std::vector<pb::PythonFrame>> MergeNativeFrames(
    const std::vector<pb::PythonFrame>& python, const EvalEntries& entries,
    const std::vector<pb::PythonFrame>& native) {
  if (entries.size() != python.size()) {
    return absl::InternalError("the Python frames and their call marks differ in number");
  }
  // Where each C call's Python frames start, outermost first.
  std::vector<size_t> calls;
  for (size_t i = 0; i < python.size(); ++i) {
    if (entries[i]) {
      calls.push_back(i);
    } else if (i == 0) {
      return absl::FailedPreconditionError(
          "the outermost Python frame does not start a call of the evaluation loop");
    }
  }
  size_t loops = 0;
  for (const pb::PythonFrame& frame : native) loops += IsEvalLoop(frame.function());
  if (loops != calls.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the native stack has ", loops, " frames of the evaluation loop ",
        "(_PyEval_EvalFrameDefault) and the Python frames come from ", calls.size(),
        " calls of it"));
  }
  std::vector<pb::PythonFrame> merged;
  merged.reserve(native.size() + python.size());
  size_t call = 0;
  for (const pb::PythonFrame& frame : native) {
    if (!IsEvalLoop(frame.function())) {
      merged.push_back(frame);
      continue;
    }
    const size_t end = call + 1 < calls.size() ? calls[call + 1] : python.size();
    merged.insert(merged.end(), python.begin() + calls[call], python.begin() + end);
    ++call;
  }
  return merged;
}

}  // namespace procwarp::python
