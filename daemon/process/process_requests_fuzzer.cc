// Fuzzes the checks of every Processes request (process_requests.h and the
// spawn plan) with hostile requests from a user and from an admin: each
// ends in OK or a client error with a message, and what they let through
// keeps the rules (a user's child runs as that user, argv and labels within
// their bounds). See docs/fuzzing.md.
#include <cstddef>
#include <cstdint>

#include "daemon/process/process_requests.h"
#include "daemon/process/spawn_plan.h"
#include "daemon/server/record_bounds.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "tools/fuzz/request_fuzz.h"

namespace procwarp {
namespace {

using google::protobuf::Message;
namespace v1 = procwarp::v1;

void CheckSpawn(const Message& message) {
  const auto& request = static_cast<const v1::SpawnRequest&>(message);
  absl::Status status = CheckSpawnRequest(request);
  AssertClientStatus(status);
  if (!status.ok()) return;
  size_t argv_bytes = 0, label_bytes = 0;
  for (const std::string& arg : request.argv()) argv_bytes += arg.size() + 1 + 8;
  for (const auto& [key, value] : request.labels()) {
    label_bytes += key.size() + value.size();
  }
  FuzzAssert(argv_bytes <= kMaxRecordArgvBytes && label_bytes <= kMaxLabelBytes,
             "argv or labels past their bound were let through");
  for (const Identity* caller : {&FuzzUser(), &FuzzAdmin()}) {
    absl::StatusOr<SpawnPlan> plan = BuildSpawnPlan(request, *caller);
    AssertClientStatus(plan.status());
    if (!plan.ok()) continue;
    FuzzAssert(!plan->executables.empty(), "a plan with nothing to execute");
    FuzzAssert(plan->argv.size() == static_cast<size_t>(request.argv_size()),
               "argv changed on its way into the plan");
    if (!caller->admin) {
      // Children run as their caller, never as anyone else.
      FuzzAssert(plan->uid == caller->uid && plan->gid == caller->gid &&
                     plan->groups == caller->groups,
                 "a user's spawn runs as someone else");
    }
    FuzzAssert(plan->umask <= 0777,
               "a umask that is no file mode");
  }
}

void CheckSignal(const Message& message) {
  AssertClientStatus(
      CheckSignalRequest(static_cast<const v1::SignalRequest&>(message)));
}

void CheckResizePty(const Message& message) {
  const auto& request = static_cast<const v1::ResizePtyRequest&>(message);
  absl::Status status = CheckResizePtyRequest(request);
  AssertClientStatus(status);
  if (status.ok()) {
    FuzzAssert(request.size().rows() >= 1 && request.size().rows() <= 0xffff &&
                   request.size().cols() >= 1 && request.size().cols() <= 0xffff,
               "a window size a winsize cannot hold");
  }
}

void CheckList(const Message& message) {
  const auto& request = static_cast<const v1::ListProcessesRequest&>(message);
  AssertOnlyAdminsListAll(request.all(), [&](const Identity& caller) {
    return CheckListProcessesRequest(request, caller);
  });
}

}  // namespace
}  // namespace procwarp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace procwarp;
  static const RequestChecks* checks = new RequestChecks{
      {"Spawn", CheckSpawn},
      {"Wait", NothingToCheck},
      {"Signal", CheckSignal},
      {"Get", NothingToCheck},
      {"List", CheckList},
      {"Remove", NothingToCheck},
      // The first message names the process; the rest is stdin data.
      {"Attach", NothingToCheck},
      {"ResizePty", CheckResizePty},
      {"Events", NothingToCheck},
  };
  FuzzServiceRequest(
      *procwarp::v1::SpawnRequest::descriptor()->file()->FindServiceByName(
          "Processes"),
      *checks, data, size);
  return 0;
}
