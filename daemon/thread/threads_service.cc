// See threads_service.h.
//
// Auditing: creating and ending threads and opening an Execute stream are
// audited; single syscalls are not, because the audit line would cost more
// than the syscall path itself (DESIGN.md's unary target is 1.3x a bare
// echo). A thread only ever acts with its owner's credentials, so what it can
// do to others is bounded by what its owner could do anyway.
#include "daemon/thread/threads_service.h"

#include "absl/strings/str_cat.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

constexpr int kMaxArgs = 6;
// One Execute message may not hold more than this many syscalls: the
// replies must fit a gRPC message and the agent's socket buffers.
constexpr int kMaxBatch = 65536;

absl::Status ToAgentCall(const procwarp::v1::Syscall& syscall, int index,
                         AgentCall* call) {
  if (syscall.args_size() > kMaxArgs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "syscall ", index, " (number ", syscall.number(), ") has ",
        syscall.args_size(), " arguments; at most 6"));
  }
  *call = AgentCall();
  call->nr = syscall.number();
  for (int i = 0; i < syscall.args_size(); ++i) {
    call->args[i] = static_cast<uint64_t>(syscall.args(i));
  }
  return absl::OkStatus();
}

}  // namespace

procwarp::v1::SyscallResult ToSyscallResult(int64_t raw) {
  procwarp::v1::SyscallResult result;
  if (raw < 0 && raw >= -4095) {
    result.set_value(-1);
    result.set_error(static_cast<int32_t>(-raw));
    result.set_error_name(std::string(ErrnoName(static_cast<int>(-raw))));
  } else {
    result.set_value(raw);
  }
  return result;
}

absl::Status ExplainThreadError(AgentThread& thread, absl::Status status) {
  if (absl::IsUnavailable(status)) {
    absl::Status alive = thread.CheckAlive(absl::Seconds(1));
    if (!alive.ok()) return alive;
  }
  return status;
}

grpc::Status ThreadsService::CreateThread(
    grpc::ServerContext* context,
    const procwarp::v1::CreateThreadRequest* request,
    procwarp::v1::CreateThreadResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto session, callers_->SessionOf(context));
    ASSIGN_OR_RETURN(auto thread, table_->Create(*request, caller, session->id));
    *response->mutable_thread() = thread->Info();
    Audit("thread_create", caller,
          {{"THREAD_ID", thread->id()},
           {"TARGET_PID", absl::StrCat(thread->pid())},
           {"PERSISTENT", request->persistent() ? "1" : "0"}});
    return absl::OkStatus();
  });
}

grpc::Status ThreadsService::Syscall(grpc::ServerContext* context,
                                     const procwarp::v1::SyscallRequest* request,
                                     procwarp::v1::SyscallResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    AgentCall call;
    RETURN_IF_ERROR(ToAgentCall(request->syscall(), 0, &call));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    std::vector<AgentReply> replies;
    absl::Status run = thread->connection().Run(
        absl::MakeConstSpan(&call, 1), &replies,
        [context] { return context->IsCancelled(); });
    RETURN_IF_ERROR(ExplainThreadError(*thread, run));
    *response->mutable_result() = ToSyscallResult(replies[0].result);
    return absl::OkStatus();
  });
}

grpc::Status ThreadsService::Execute(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<procwarp::v1::ExecuteResponse,
                             procwarp::v1::ExecuteRequest>* stream) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    procwarp::v1::ExecuteRequest request;
    if (!stream->Read(&request)) return absl::OkStatus();  // nothing asked
    if (request.thread_id().empty()) {
      return absl::InvalidArgumentError(
          "Execute: the first message must name a thread_id");
    }
    ASSIGN_OR_RETURN(auto thread, table_->Find(request.thread_id(), caller));
    Audit("thread_execute", caller,
          {{"THREAD_ID", thread->id()},
           {"TARGET_PID", absl::StrCat(thread->pid())}});
    // Reused across batches: no per-batch allocation on the hot path.
    std::vector<AgentCall> calls;
    std::vector<AgentReply> replies;
    procwarp::v1::ExecuteResponse response;
    auto cancelled = [context] { return context->IsCancelled(); };
    uint64_t batch = 0;
    do {
      if (!request.thread_id().empty() && request.thread_id() != thread->id()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Execute: message ", batch, " names thread ", request.thread_id(),
            " but the stream is for ", thread->id()));
      }
      if (request.syscalls_size() > kMaxBatch) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Execute: message ", batch, " has ", request.syscalls_size(),
            " syscalls; at most ", kMaxBatch, " per message"));
      }
      calls.resize(request.syscalls_size());
      for (int i = 0; i < request.syscalls_size(); ++i) {
        RETURN_IF_ERROR(ToAgentCall(request.syscalls(i), i, &calls[i]));
      }
      RETURN_IF_ERROR(ExplainThreadError(
          *thread, thread->connection().Run(calls, &replies, cancelled)));
      response.Clear();
      for (const AgentReply& reply : replies) {
        *response.add_results() = ToSyscallResult(reply.result);
      }
      if (!stream->Write(response)) {
        return absl::CancelledError("Execute: the client went away");
      }
      ++batch;
    } while (stream->Read(&request));
    return absl::OkStatus();
  });
}

grpc::Status ThreadsService::ExitThread(
    grpc::ServerContext* context, const procwarp::v1::ExitThreadRequest* request,
    procwarp::v1::ExitThreadResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto thread, table_->Remove(request->id(), caller));
    thread->Exit(request->exit_code());
    *response->mutable_thread() = thread->Info();
    Audit("thread_exit", caller,
          {{"THREAD_ID", thread->id()},
           {"TARGET_PID", absl::StrCat(thread->pid())}});
    return absl::OkStatus();
  });
}

grpc::Status ThreadsService::ListThreads(
    grpc::ServerContext* context, const procwarp::v1::ListThreadsRequest* request,
    procwarp::v1::ListThreadsResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    if (request->all() && !caller.admin) {
      return absl::PermissionDeniedError(
          "ListThreads: listing every user's threads needs root or the admin "
          "group");
    }
    for (const auto& thread : table_->List(caller, request->all())) {
      *response->add_threads() = thread->Info();
    }
    return absl::OkStatus();
  });
}

grpc::Status ThreadsService::GetThread(
    grpc::ServerContext* context, const procwarp::v1::GetThreadRequest* request,
    procwarp::v1::GetThreadResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->id(), caller));
    *response->mutable_thread() = thread->Info();
    return absl::OkStatus();
  });
}

}  // namespace procwarp
