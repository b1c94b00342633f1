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
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/server/log.h"
#include "daemon/server/paging.h"
#include "daemon/thread/thread_requests.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/fault_point.h"
#include "daemon/util/status_macros.h"

namespace procwarp {

grpc::Status ThreadsService::CreateThread(
    grpc::ServerContext* context,
    const procwarp::v1::CreateThreadRequest* request,
    procwarp::v1::CreateThreadResponse* response) {
  return WithSession(*callers_, context, [&](const Session& session) -> absl::Status {
    const Identity& caller = session.identity;
    RETURN_IF_ERROR(CheckCreateThreadRequest(*request));
    if (request->has_attach()) {
      ASSIGN_OR_RETURN(*response->mutable_thread(),
                       Attach(session, ToAttachThreadRequest(*request)));
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(auto thread, table_->Create(ToAgentThreadRequest(*request),
                                                 caller, session.id));
    *response->mutable_thread() = thread->Info();
    Audit("thread_create", caller,
          {{"THREAD_ID", thread->id()},
           {"TARGET_PID", absl::StrCat(thread->pid())},
           {"PERSISTENT", request->persistent() ? "1" : "0"}});
    return absl::OkStatus();
  });
}

grpc::Status ThreadsService::AttachThread(
    grpc::ServerContext* context,
    const procwarp::v1::AttachThreadRequest* request,
    procwarp::v1::AttachThreadResponse* response) {
  return WithSession(*callers_, context, [&](const Session& session) -> absl::Status {
    RETURN_IF_ERROR(CheckAttachThreadRequest(*request));
    ASSIGN_OR_RETURN(*response->mutable_thread(), Attach(session, *request));
    return absl::OkStatus();
  });
}

absl::StatusOr<procwarp::v1::ThreadInfo> ThreadsService::Attach(
    const Session& session, const procwarp::v1::AttachThreadRequest& request) {
  const Identity& caller = session.identity;
  AttachedThread::Target target;
  target.pid = request.pid();
  target.tid = request.has_tid() ? request.tid() : 0;
  target.stop_all_threads = request.stop_all_threads();
  target.labels.insert(request.labels().begin(), request.labels().end());
  // Seizing waits for the target's tracer thread: bounded.
  absl::StatusOr<std::shared_ptr<Thread>> thread =
      table_->Attach(target, caller, session.id, request.persistent(),
                     absl::Now() + absl::Seconds(10));
  if (!thread.ok()) {
    Audit("thread_attach_refused", caller,
          {{"TARGET_PID", absl::StrCat(request.pid())},
           {"REASON", std::string(thread.status().message())}});
    return thread.status();
  }
  procwarp::v1::ThreadInfo info = (*thread)->Info();
  Audit("thread_attach", caller,
        {{"THREAD_ID", (*thread)->id()},
         {"TARGET_PID", absl::StrCat(request.pid())},
         {"TARGET_TID", absl::StrCat(info.tid())},
         {"TARGET_EXE", info.exe()},
         {"PERSISTENT", request.persistent() ? "1" : "0"}});
  return info;
}

grpc::Status ThreadsService::Syscall(grpc::ServerContext* context,
                                     const procwarp::v1::SyscallRequest* request,
                                     procwarp::v1::SyscallResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ThreadSyscall call;
    RETURN_IF_ERROR(ToThreadSyscall(request->syscall(), 0, &call));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    std::vector<ThreadSyscallResult> results;
    const CancelCheck cancelled = [context] { return context->IsCancelled(); };
    RETURN_IF_ERROR(thread->ExplainError(thread->Syscalls(
        caller, absl::MakeConstSpan(&call, 1), &results,
        {.stop_all_threads = request->stop_all_threads(),
         .cancelled = &cancelled})));
    *response->mutable_result() = ToSyscallResult(results[0]);
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
    std::vector<ThreadSyscall> calls;
    std::vector<ThreadSyscallResult> results;
    procwarp::v1::ExecuteResponse response;
    const CancelCheck cancelled = [context] { return context->IsCancelled(); };
    uint64_t batch = 0;
    do {
      RETURN_IF_ERROR(ToThreadSyscalls(request, batch, thread->id(), &calls));
      RETURN_IF_ERROR(thread->ExplainError(thread->Syscalls(
          caller, calls, &results,
          {.stop_all_threads = request.stop_all_threads(),
           .cancelled = &cancelled})));
      response.Clear();
      for (const ThreadSyscallResult& result : results) {
        *response.add_results() = ToSyscallResult(result);
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
    if (!thread->Release(ReleaseReason::kExitThread, request->exit_code())) {
      // It exec'd a program that made itself root (not the caller's to
      // kill), or a tracer holds its exit back.
      table_->Linger(thread);
      Audit("thread_exit_refused", caller,
            {{"THREAD_ID", thread->id()},
             {"TARGET_PID", absl::StrCat(thread->pid())}});
      absl::Status why = thread->ReleaseRefusal();
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
        [](const std::shared_ptr<Thread>& t) -> const std::string& {
          return t->id();
        },
        [](const std::shared_ptr<Thread>& t) { return t->Info(); },
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
    ASSIGN_OR_RETURN(auto handle, table_->Find(request->thread_id(), caller));
    // Only an agent turns into the program it execs; an attached process is
    // not ours to replace.
    AgentThread* thread = handle->agent();
    if (thread == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Exec: ", handle->Name(),
          " is an attached thread; Exec turns only agent threads (from "
          "CreateThread) into managed processes"));
    }
    // The new program becomes a managed process: its place in the owner's
    // process limit is taken before the execve, so past the limit the thread
    // simply stays a thread (nothing runs unmanaged).
    ASSIGN_OR_RETURN(ProcessSlot slot, processes_->ReserveSlot(thread->owner()));
    FaultPoint("exec", 0, thread->pidfd());  // before anything is mapped
    const std::string path =
        request->path().empty() ? request->argv(0) : request->path();
    AgentConnection& agent = thread->connection();

    // Room for the strings in the thread; the size is known before the
    // addresses are, since only pointers depend on the base.
    const size_t size = ExecBlock(0, path, *request).size();
    ASSIGN_OR_RETURN(const uint64_t address,
                     thread->Map(caller, size, PROT_READ | PROT_WRITE, "Exec"));
    const std::string block = ExecBlock(address, path, *request);
    const size_t argc = request->argv_size();
    const uint64_t argv = address;
    const uint64_t envp = address + (argc + 1) * sizeof(uint64_t);
    const uint64_t path_address =
        address + (argc + 1 + request->env_size() + 1) * sizeof(uint64_t);

    AgentCall calls[3];
    calls[0].op = PW_OP_WRITE_MEM;
    calls[0].args[0] = address;
    calls[0].args[1] = block.size();
    calls[0].payload = block;
    // The program becomes a managed process, which outlives the daemon
    // (docs/architecture.md, "Restart without loss"): the agent's
    // PR_SET_PDEATHSIG would survive the execve and kill it with the daemon.
    calls[1] = AgentCall::Syscall(SYS_prctl, {PR_SET_PDEATHSIG, 0});
    calls[2] = AgentCall::Syscall(SYS_execve, {path_address, argv, envp});
    // The agent's socket is close-on-exec: a successful execve shows up as
    // EOF on it, with no reply.
    calls[2].flags = PW_REQ_FLUSH_FIRST;
    FaultPoint("exec", 1, thread->pidfd());  // mapped, before the execve
    RETURN_IF_ERROR(thread->BeginExec());
    std::vector<AgentReply> replies;
    absl::Status run = agent.Run(calls, &replies);
    if (run.ok()) {
      thread->EndExec(/*succeeded=*/false);
      thread->Unmap(caller, address, size).IgnoreError();
      // Still an agent: it dies with the daemon again.
      agent.Syscall(SYS_prctl, {PR_SET_PDEATHSIG, SIGKILL}).IgnoreError();
      int64_t result = replies[2].result;
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
    // (Step 2 is in ProcessTable::Admit.)
    FaultPoint("exec", 3, process->pidfd());  // adopted, before the answer
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
