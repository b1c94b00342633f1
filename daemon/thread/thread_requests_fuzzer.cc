// Fuzzes the checks of every Threads request (thread_requests.h) with
// hostile requests: each ends in OK or a client error with a message, and
// what they let through keeps the rules (batches and argument counts
// within bounds, an exec block that holds exactly its strings and points
// only inside itself). See docs/fuzzing.md.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "daemon/server/record_bounds.h"
#include "daemon/thread/thread_requests.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tools/fuzz/request_fuzz.h"

namespace procwarp {
namespace {

using google::protobuf::Message;
namespace v1 = procwarp::v1;

void CheckCreateThread(const Message& message) {
  const auto& request = static_cast<const v1::CreateThreadRequest&>(message);
  absl::Status status = CheckCreateThreadRequest(request);
  AssertClientStatus(status);
  if (!status.ok()) return;
  FuzzAssert(!request.share_fd_table() || !request.parent_thread_id().empty(),
             "a shared fd table without a parent");
  if (request.has_attach()) {
    // The attach origin is exactly an AttachThreadRequest that passes.
    const v1::AttachThreadRequest attach = ToAttachThreadRequest(request);
    FuzzAssert(CheckAttachThreadRequest(attach).ok(),
               "an attach origin that AttachThread would refuse");
    FuzzAssert(attach.pid() == request.attach().pid() &&
                   attach.persistent() == request.persistent() &&
                   attach.labels_size() == request.labels_size(),
               "an attach origin changed on its way");
    return;
  }
  // Launch, clone or no origin: one agent request of the old shape, which
  // passes the checks itself and keeps what was asked.
  const v1::CreateThreadRequest agent = ToAgentThreadRequest(request);
  FuzzAssert(agent.origin_case() == v1::CreateThreadRequest::ORIGIN_NOT_SET,
             "an agent request that still has an origin");
  FuzzAssert(CheckCreateThreadRequest(agent).ok(),
             "an agent request that its own check refuses");
  FuzzAssert(agent.persistent() == request.persistent() &&
                 agent.labels_size() == request.labels_size(),
             "persistent or labels lost");
  const bool clone = request.has_clone() ||
                     (!request.has_launch() && !request.parent_thread_id().empty());
  FuzzAssert(clone == !agent.parent_thread_id().empty(),
             "a launch turned into a clone or back");
}

void CheckAttachThread(const Message& message) {
  const auto& request = static_cast<const v1::AttachThreadRequest&>(message);
  absl::Status status = CheckAttachThreadRequest(request);
  AssertClientStatus(status);
  if (status.ok()) {
    FuzzAssert(request.pid() > 0 && (!request.has_tid() || request.tid() > 0),
               "an attach to no process or no thread");
  }
}

void CheckSyscall(const Message& message) {
  const auto& request = static_cast<const v1::SyscallRequest&>(message);
  ThreadSyscall call;
  absl::Status status = ToThreadSyscall(request.syscall(), 0, &call);
  AssertClientStatus(status);
  if (!status.ok()) return;
  FuzzAssert(call.nr == request.syscall().number(),
             "a syscall turned into another one");
  for (int i = 0; i < 6; ++i) {
    FuzzAssert(call.args[i] == (i < request.syscall().args_size()
                                    ? static_cast<uint64_t>(request.syscall().args(i))
                                    : 0),
               "an argument changed or an unset one is not 0");
  }
  FuzzAssert(request.syscall().args_size() <= 6, "more than 6 arguments");
}

void CheckExecute(const Message& message) {
  const auto& request = static_cast<const v1::ExecuteRequest&>(message);
  std::vector<ThreadSyscall> calls;
  // As the first message (names the stream's thread) and as a later one
  // of another stream.
  for (const std::string& stream : {request.thread_id(), std::string("t")}) {
    absl::Status status = ToThreadSyscalls(request, 1, stream, &calls);
    AssertClientStatus(status);
    if (!status.ok()) continue;
    FuzzAssert(calls.size() == static_cast<size_t>(request.syscalls_size()) &&
                   calls.size() <= kMaxExecuteBatch,
               "a batch past its bound, or calls lost");
    for (int i = 0; i < request.syscalls_size(); ++i) {
      FuzzAssert(calls[i].nr == request.syscalls(i).number(),
                 "a requested syscall became another one");
    }
  }
}

void CheckExec(const Message& message) {
  const auto& request = static_cast<const v1::ExecRequest&>(message);
  absl::Status status = CheckExecRequest(request);
  AssertClientStatus(status);
  if (!status.ok()) return;
  const std::string path = request.path().empty() ? request.argv(0) : request.path();
  const uint64_t base = 0x7f0000000000;
  const std::string block = ExecBlock(base, path, request);
  const size_t pointers = request.argv_size() + 1 + request.env_size() + 1;
  FuzzAssert(block.size() <= pointers * 8 + kMaxExecStrings + path.size() + 1,
             "an exec block larger than its bound");
  FuzzAssert(ExecBlock(0, path, request).size() == block.size(),
             "the block's size depends on where it goes");
  // Every pointer is 0 (an array's end) or names a NUL-terminated string
  // inside the block.
  for (size_t i = 0; i < pointers; ++i) {
    uint64_t p;
    memcpy(&p, block.data() + i * 8, 8);
    if (p == 0) continue;
    FuzzAssert(p >= base + pointers * 8 && p < base + block.size(),
               "an argv/env pointer outside its block");
    FuzzAssert(memchr(block.data() + (p - base), '\0',
                      block.size() - (p - base)) != nullptr,
               "a string without its NUL");
  }
}

void CheckListThreads(const Message& message) {
  const auto& request = static_cast<const v1::ListThreadsRequest&>(message);
  AssertOnlyAdminsListAll(request.all(), [&](const Identity& caller) {
    return CheckListThreadsRequest(request, caller);
  });
}

}  // namespace
}  // namespace procwarp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace procwarp;
  static const RequestChecks* checks = new RequestChecks{
      {"CreateThread", CheckCreateThread},
      {"AttachThread", CheckAttachThread},
      {"Syscall", CheckSyscall},
      {"Execute", CheckExecute},
      {"ExitThread", NothingToCheck},
      {"ListThreads", CheckListThreads},
      {"GetThread", NothingToCheck},
      {"Exec", CheckExec},
  };
  FuzzServiceRequest(
      *procwarp::v1::CreateThreadRequest::descriptor()->file()->FindServiceByName(
          "Threads"),
      *checks, data, size);
  return 0;
}
