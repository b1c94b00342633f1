// Fuzzes the checks of every Exec request (exec_requests.h): each ends in OK
// or a client error with a message, and what they let through is what the
// handlers rely on — a usable target, at most six arguments, text without
// NUL within bounds, an absolute library path. See docs/fuzzing.md.
#include <cstddef>
#include <cstdint>

#include "daemon/exec/exec_requests.h"
#include "proto/procwarp/exec/v1/exec.grpc.pb.h"
#include "tools/fuzz/request_fuzz.h"

namespace procwarp {
namespace {

using google::protobuf::Message;
namespace pb = procwarp::exec::v1;

// OK means a pid > 0 or a bounded non-empty thread id.
void AssertUsableTarget(const pb::Target& target) {
  FuzzAssert(target.target_case() == pb::Target::kPid
                 ? target.pid() > 0
                 : target.target_case() == pb::Target::kThreadId &&
                       !target.thread_id().empty() &&
                       target.thread_id().size() <= exec::kMaxHandleId,
             "an unusable target was let through");
}

void AssertText(const std::string& text) {
  FuzzAssert(!text.empty() && text.size() < exec::kMaxSpec &&
                 text.find('\0') == std::string::npos,
             "text out of bounds or with a NUL was let through");
}

void CheckCall(const Message& message) {
  const auto& request = static_cast<const pb::CallRequest&>(message);
  absl::Status status = exec::CheckCallRequest(request);
  AssertClientStatus(status);
  if (!status.ok()) return;
  AssertUsableTarget(request.target());
  AssertText(request.function());
  FuzzAssert(static_cast<size_t>(request.args_size()) <= exec::kMaxCallArgs,
             "more than six call arguments");
}

void CheckInject(const Message& message) {
  const auto& request = static_cast<const pb::InjectLibraryRequest&>(message);
  absl::Status status = exec::CheckInjectLibraryRequest(request);
  AssertClientStatus(status);
  if (!status.ok()) return;
  AssertUsableTarget(request.target());
  AssertText(request.path());
  FuzzAssert(request.path()[0] == '/', "a relative library path");
}

void CheckUnload(const Message& message) {
  const auto& request = static_cast<const pb::UnloadLibraryRequest&>(message);
  absl::Status status = exec::CheckUnloadLibraryRequest(request);
  AssertClientStatus(status);
  if (!status.ok()) return;
  FuzzAssert(!request.handle().empty() &&
                 request.handle().size() <= exec::kMaxHandleId,
             "an unusable handle");
}

void CheckPreflight(const Message& message) {
  const auto& request = static_cast<const pb::PreflightRequest&>(message);
  absl::Status status = exec::CheckPreflightRequest(request);
  AssertClientStatus(status);
  if (!status.ok()) return;
  FuzzAssert(!request.has_pid() || request.pid() > 0, "a pid <= 0");
}

void CheckRunPython(const Message& message) {
  const auto& request = static_cast<const pb::RunPythonRequest&>(message);
  for (const Identity* caller : {&FuzzUser(), &FuzzAdmin()}) {
    absl::Status status = exec::CheckRunPythonRequest(request, *caller);
    AssertClientStatus(status);
    if (!status.ok()) continue;
    AssertUsableTarget(request.target());
    FuzzAssert(!request.code().empty() && request.code().size() <= exec::kMaxPythonCode,
               "code past its bound was let through");
    FuzzAssert(caller->admin || !request.override_opt_out(),
               "a user may override a target's opt-out");
  }
}

}  // namespace
}  // namespace procwarp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace procwarp;
  static const RequestChecks* checks = new RequestChecks{
      {"Call", CheckCall},
      {"InjectLibrary", CheckInject},
      {"UnloadLibrary", CheckUnload},
      {"Preflight", CheckPreflight},
      {"RunPython", CheckRunPython},
  };
  FuzzServiceRequest(
      *pb::CallRequest::descriptor()->file()->FindServiceByName("Exec"),
      *checks, data, size);
  return 0;
}
