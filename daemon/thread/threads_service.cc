// See threads_service.h.
//
// Auditing: creating and ending threads and opening an Execute stream are
// audited; single syscalls are not, because the audit line would cost more
// than the syscall path itself (DESIGN.md's unary target is 1.3x a bare
// echo). A thread only ever acts with its owner's credentials, so what it can
// do to others is bounded by what its owner could do anyway.
//
// Syscall, Execute and Exec go through the agent itself: they run with the
// owner's credentials (even if the owner took over the agent's socket, or the
// agent exec'd something else, whatever answers can only do what the owner
// could), so the kernel checks them and the daemon adds nothing. What the
// daemon does to a thread's process with its own privileges goes through
// AgentThread (ActOnProcess, the pinned memory, Kill), which checks it at the
// time of use.
#include "daemon/thread/threads_service.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/server/log.h"
#include "daemon/server/paging.h"
#include "daemon/thread/thread_requests.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {

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
  return WithSession(*callers_, context, [&](const Session& session) {
    const Identity& caller = session.identity;
    RETURN_IF_ERROR(CheckCreateThreadRequest(*request));
    ASSIGN_OR_RETURN(auto thread, table_->Create(*request, caller, session.id));
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
  return WithStreamCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
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
      RETURN_IF_ERROR(ToAgentCalls(request, batch, thread->id(), &calls));
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
    if (!thread->Exit(request->exit_code())) {
      // It exec'd a program that made itself root (not the caller's to
      // kill), or a tracer holds its exit back.
      table_->Linger(thread);
      Audit("thread_exit_refused", caller,
            {{"THREAD_ID", thread->id()},
             {"TARGET_PID", absl::StrCat(thread->pid())}});
      absl::Status why = thread->KillRefusal();
      return absl::Status(
          why.code(),
          absl::StrCat("ExitThread: ", why.message(),
                       "; the handle is released, and the daemon reaps the "
                       "process once it exits (until then it counts against "
                       "your thread limit)"));
    }
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
    RETURN_IF_ERROR(CheckListThreadsRequest(*request, caller));
    // The table lists in id order.
    response->set_next_page_token(FillPage(
        table_->List(caller, request->all()), request->page_token(),
        request->page_size(),
        [](const std::shared_ptr<AgentThread>& t) -> const std::string& {
          return t->id();
        },
        [](const std::shared_ptr<AgentThread>& t) { return t->Info(); },
        [&](procwarp::v1::ThreadInfo info) {
          *response->add_threads() = std::move(info);
        }));
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

grpc::Status ThreadsService::Exec(grpc::ServerContext* context,
                                  const procwarp::v1::ExecRequest* request,
                                  procwarp::v1::ExecResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    RETURN_IF_ERROR(CheckExecRequest(*request));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    // The new program becomes a managed process: its place in the owner's
    // process limit is taken before the execve, so past the limit the thread
    // simply stays a thread (nothing runs unmanaged).
    ASSIGN_OR_RETURN(ProcessSlot slot, processes_->ReserveSlot(thread->owner()));
    const std::string path =
        request->path().empty() ? request->argv(0) : request->path();
    AgentConnection& agent = thread->connection();

    // Room for the strings in the thread; the size is known before the
    // addresses are, since only pointers depend on the base.
    const size_t size = ExecBlock(0, path, *request).size();
    ASSIGN_OR_RETURN(int64_t base,
                     agent.Syscall(SYS_mmap, {0, size, PROT_READ | PROT_WRITE,
                                              MAP_PRIVATE | MAP_ANONYMOUS,
                                              static_cast<uint64_t>(-1), 0}));
    if (base < 0 && base >= -4095) {
      return ErrnoStatus(
          static_cast<int>(-base),
          absl::StrCat("Exec: mmap(", size, ") in ", thread->Name()));
    }
    const uint64_t address = static_cast<uint64_t>(base);
    const std::string block = ExecBlock(address, path, *request);
    const size_t argc = request->argv_size();
    const uint64_t argv = address;
    const uint64_t envp = address + (argc + 1) * sizeof(uint64_t);
    const uint64_t path_address =
        address + (argc + 1 + request->env_size() + 1) * sizeof(uint64_t);

    AgentCall calls[2];
    calls[0].op = PW_OP_WRITE_MEM;
    calls[0].args[0] = address;
    calls[0].args[1] = block.size();
    calls[0].payload = block;
    calls[1] = AgentCall::Syscall(SYS_execve, {path_address, argv, envp});
    // The agent's socket is close-on-exec: a successful execve shows up as
    // EOF on it, with no reply.
    calls[1].flags = PW_REQ_FLUSH_FIRST;
    RETURN_IF_ERROR(thread->BeginExec());
    std::vector<AgentReply> replies;
    absl::Status run = agent.Run(calls, &replies);
    if (run.ok()) {
      thread->EndExec(/*succeeded=*/false);
      agent.Syscall(SYS_munmap, {address, size}).IgnoreError();
      int64_t result = replies[1].result;
      if (replies[0].result != static_cast<int64_t>(block.size())) {
        return absl::InternalError(absl::StrCat("Exec: writing argv/env into ",
                                                thread->Name(), " gave ",
                                                replies[0].result));
      }
      return ErrnoStatus(
          result < 0 ? static_cast<int>(-result) : EIO,
          absl::StrCat("Exec: execve(", path, ") in ", thread->Name()));
    }
    if (!absl::IsUnavailable(run)) {
      thread->EndExec(/*succeeded=*/false);
      return run;
    }
    // The stream ended without an answer: the program replaced the agent.
    // (An agent killed at this very moment looks the same; the process
    // table then reports how it died.)
    thread->EndExec(/*succeeded=*/true);
    table_->Remove(thread->id(), caller).IgnoreError();
    UniqueFd pidfd(fcntl(thread->pidfd(), F_DUPFD_CLOEXEC, 0));
    if (!pidfd) {
      return ErrnoStatus(
          errno, absl::StrCat("Exec: dup(pidfd of ", thread->Name(), ")"));
    }
    procwarp::v1::ProcessInfo info;
    for (const std::string& arg : request->argv()) info.add_argv(arg);
    *info.mutable_labels() = request->labels();
    ASSIGN_OR_RETURN(auto process,
                     processes_->Adopt(std::move(slot), thread->pid(),
                                       std::move(pidfd), thread->owner(),
                                       std::move(info)));
    *response->mutable_process() = process->Info();
    Audit("thread_exec", caller,
          {{"THREAD_ID", thread->id()},
           {"PROCESS_ID", process->id()},
           {"TARGET_PID", absl::StrCat(thread->pid())},
           {"PATH", path}});
    return absl::OkStatus();
  });
}

}  // namespace procwarp
