// See agent_thread.h.
#include "daemon/thread/agent_thread.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/util/errno_status.h"
#include "daemon/thread/agent_memory.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// How long Kill waits for a killed agent to become reapable.
constexpr int kKillWaitMs = 2000;

std::string Describe(const procwarp::v1::ExitStatus& status) {
  if (status.how_case() == procwarp::v1::ExitStatus::HOW_NOT_SET) {
    return "has ended (its exit status is unknown: it ended after a daemon "
           "restart, and only its parent learns how)";
  }
  if (status.has_signal()) {
    return absl::StrCat("was killed by signal ", status.signal(), " (",
                        strsignal(status.signal()), ")");
  }
  return absl::StrCat("exited with status ", status.code());
}

}  // namespace

AgentThread::AgentThread(Handle handle,
                         procwarp::v1::CreateThreadRequest request,
                         LaunchedAgent agent, AgentLifetime lifetime)
    : Thread(std::move(handle)),
      request_(std::move(request)),
      agent_(std::move(agent)),
      lifetime_(lifetime),
      created_unix_ns_(lifetime.created_unix_ns != 0
                           ? lifetime.created_unix_ns
                           : absl::GetCurrentTimeNanos()) {}

AgentThread::~AgentThread() {
  if (!lifetime_.outlives_daemon) Kill();
  // The connection refers to the pidfd: it goes first.
  agent_.connection.reset();
}

std::string AgentThread::Name() const {
  return absl::StrCat("thread ", id(), " (pid ", agent_.pid, ")");
}

bool AgentThread::Reap(bool block) {
  if (exit_status_.has_value()) return true;
  // The process is (or may become) the new program's: not ours to reap.
  if (exec_state_ != ExecState::kNone) return false;
  if (lifetime_.adopted) {
    // Not our child: its pidfd turns readable once it has exited.
    pollfd pfd = {agent_.pidfd.get(), POLLIN, 0};
    if (poll(&pfd, 1, block ? -1 : 0) <= 0) return false;
    exit_status_ = noted_exit_.value_or(procwarp::v1::ExitStatus());
    return true;
  }
  siginfo_t info{};
  int r;
  do {
    r = waitid(static_cast<idtype_t>(P_PIDFD), agent_.pidfd.get(), &info,
               WEXITED | (block ? 0 : WNOHANG));
  } while (r < 0 && errno == EINTR);
  if (r < 0 || info.si_pid == 0) return false;
  procwarp::v1::ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.set_code(info.si_status);
  } else {
    status.set_signal(info.si_status);
    status.set_core_dumped(info.si_code == CLD_DUMPED);
  }
  exit_status_ = status;
  return true;
}

absl::Status AgentThread::BeginExec() {
  absl::MutexLock lock(&mu_);
  if (exec_state_ != ExecState::kNone) {
    return absl::FailedPreconditionError(
        absl::StrCat(Name(), " is already exec'ing a program"));
  }
  if (Reap(/*block=*/false)) {
    return absl::UnavailableError(
        absl::StrCat(Name(), " ", Describe(*exit_status_)));
  }
  exec_state_ = ExecState::kInProgress;
  return absl::OkStatus();
}

void AgentThread::EndExec(bool succeeded) {
  absl::MutexLock lock(&mu_);
  exec_state_ = succeeded ? ExecState::kDone : ExecState::kNone;
}

absl::Status AgentThread::CheckUsable() {
  absl::MutexLock lock(&mu_);
  if (!compromised_.empty()) {
    return absl::UnavailableError(
        absl::StrCat(Name(), " was ended by the daemon: ", compromised_));
  }
  if (exec_state_ == ExecState::kDone) {
    return absl::UnavailableError(
        absl::StrCat(Name(), " became a managed process by Exec"));
  }
  if (Reap(/*block=*/false)) {
    return absl::UnavailableError(absl::StrCat(
        Name(), " ", Describe(*exit_status_), "; release it with ExitThread"));
  }
  return absl::OkStatus();
}

absl::Status AgentThread::CheckAlive(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (!compromised_.empty()) {
      return absl::UnavailableError(
          absl::StrCat(Name(), " was ended by the daemon: ", compromised_));
    }
    if (exec_state_ == ExecState::kDone) {
      return absl::UnavailableError(
          absl::StrCat(Name(), " became a managed process by Exec"));
    }
  }
  // An agent replaced by an execve lives on (the grace would only delay the
  // answer); one that is dying is not counted as replaced.
  if (AddressSpaceReplaced()) return ExecError(owner());
  if (grace > absl::ZeroDuration()) {
    pollfd pfd = {agent_.pidfd.get(), POLLIN, 0};
    poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(grace)));
  }
  absl::MutexLock lock(&mu_);
  if (!Reap(/*block=*/false)) return absl::OkStatus();
  // Killed by the daemon for breaking the protocol: say so, not just "signal 9".
  std::string violation = agent_.connection->ViolationReason();
  return absl::UnavailableError(
      absl::StrCat(Name(), " ", Describe(*exit_status_),
                   violation.empty() ? "" : absl::StrCat(" (", violation, ")"),
                   "; release it with ExitThread"));
}

bool AgentThread::AddressSpaceReplaced() {
  if (address_space_replaced_.load()) return true;
  const int memory = agent_.memory.get();
  if (memory < 0) return false;  // unknown: the credential check still holds
  // Address 0 is never mapped: a live address space answers EIO, a released
  // one 0 bytes.
  char byte;
  if (pread(memory, &byte, 1, 0) != 0) return false;
  // Released: by an execve, or by an exit in progress (exit_mm comes before
  // the process turns into a zombie).
  absl::StatusOr<uint32_t> flags = ReadTaskFlags(agent_.proc);
  if (!flags.ok() || (*flags & kTaskExiting) != 0) return false;
  address_space_replaced_.store(true);
  return true;
}

absl::Status AgentThread::ExecError(const Identity& who) {
  const std::string execd =
      " has exec'd a new program since it started (a raw execve?)";
  absl::Status creds = CheckCallerMayPtrace(
      who, agent_.proc, absl::StrCat(Name(), ", which", execd, ","));
  if (absl::IsPermissionDenied(creds)) return creds;
  if (absl::IsNotFound(creds)) {
    return absl::UnavailableError(absl::StrCat(Name(), " has exited"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      Name(), execd,
      ": it is no longer a procwarp agent, so procwarp no longer acts on its "
      "process for you (memory, maps, fds); run programs with Threads.Exec, "
      "which turns a thread into a managed process, and release this one "
      "with ExitThread"));
}

absl::Status AgentThread::CheckAccess(const Identity& caller) {
  if (AddressSpaceReplaced()) return ExecError(caller);
  absl::Status creds = CheckCallerMayPtrace(caller, agent_.proc, Name());
  if (!absl::IsNotFound(creds)) return creds;
  absl::Status alive = CheckAlive(absl::Seconds(1));
  if (!alive.ok()) return alive;
  return absl::UnavailableError(absl::StrCat(Name(), " is exiting"));
}

absl::Status AgentThread::ActOnProcess(
    const Identity& caller,
    const std::function<absl::Status(const ProcDir&)>& op) {
  RETURN_IF_ERROR(CheckUsable());
  absl::Status result = op(agent_.proc);
  RETURN_IF_ERROR(CheckAccess(caller));
  return result;
}

absl::Status AgentThread::ExplainLostMemory(const Identity& caller) {
  RETURN_IF_ERROR(CheckUsable());
  if (AddressSpaceReplaced()) return ExecError(caller);
  // Dying: say how it ended once it can be told.
  RETURN_IF_ERROR(CheckAlive(absl::Seconds(1)));
  return absl::UnavailableError(absl::StrCat(Name(), " is exiting"));
}

void AgentThread::MarkCompromised(const std::string& why) {
  {
    absl::MutexLock lock(&mu_);
    if (compromised_.empty()) compromised_ = why;
  }
  Kill();
}

bool AgentThread::Exit(int code) {
  {
    absl::ReaderMutexLock lock(&mu_);
    if (exit_status_.has_value() || exec_state_ == ExecState::kDone)
      return true;
  }
  AgentCall call;
  call.op = PW_OP_EXIT;
  call.args[0] = static_cast<uint32_t>(code);
  std::vector<AgentReply> replies;
  // A busy agent (blocked in a syscall) would make this wait forever: give
  // it a moment, then fall back to SIGKILL.
  absl::Time deadline = absl::Now() + absl::Seconds(2);
  absl::Status status =
      agent_.connection->Run(absl::MakeConstSpan(&call, 1), &replies,
                             [deadline] { return absl::Now() > deadline; });
  if (status.ok()) {
    // The reply is the agent's word (or whoever holds its socket): wait for
    // the exit itself, boundedly, before reaping.
    pollfd pfd = {agent_.pidfd.get(), POLLIN, 0};
    int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    poll(&pfd, 1, static_cast<int>(std::max<int64_t>(left, 0)));
  }
  return Kill();
}

bool AgentThread::Kill() {
  absl::MutexLock lock(&mu_);
  if (exit_status_.has_value() || exec_state_ == ExecState::kDone) return true;
  // Not reaped yet, so the directory still names the agent's process. The
  // owner may signal it only while its real or saved uid is the owner's.
  if (agent_.proc.valid()) {
    absl::Status may = CheckCallerMayKill(owner(), agent_.proc, Name());
    if (absl::IsPermissionDenied(may)) {
      kill_refusal_ = may;
      return false;
    }
  }
  syscall(SYS_pidfd_send_signal, agent_.pidfd.get(), SIGKILL, nullptr, 0);
  if (exec_state_ != ExecState::kNone) return true;  // the exec's to reap
  // Wait for the exit boundedly: the owner may ptrace its agent, and a
  // tracer holds a dead tracee back from its parent until it waits for it
  // itself (a blocking wait here would be the owner's to prolong forever).
  pollfd pfd = {agent_.pidfd.get(), POLLIN, 0};
  poll(&pfd, 1, kKillWaitMs);
  if (Reap(/*block=*/false)) return true;
  kill_refusal_ = absl::UnavailableError(
      absl::StrCat(Name(), " was killed but could not be reaped within ",
                   kKillWaitMs, " ms (is another process tracing it?)"));
  return false;
}

absl::Status AgentThread::KillRefusal() {
  absl::MutexLock lock(&mu_);
  return kill_refusal_;
}

bool AgentThread::Reaped() {
  // Callers hold the thread table's lock: never wait behind a Kill here. A
  // thread busy being killed or used is not reaped as far as they may assume.
  if (!mu_.TryLock()) return false;
  bool reaped = Reap(/*block=*/false);
  mu_.Unlock();
  return reaped;
}

absl::Status AgentThread::Syscalls(const Identity&,
                                   absl::Span<const ThreadSyscall> calls,
                                   std::vector<ThreadSyscallResult>* results,
                                   const OperationOptions& options) {
  std::vector<AgentCall> agent_calls(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    agent_calls[i] = AgentCall::Syscall(calls[i].nr, calls[i].args);
  }
  std::vector<AgentReply> replies;
  RETURN_IF_ERROR(agent_.connection->Run(
      agent_calls, &replies,
      options.cancelled != nullptr ? *options.cancelled : CancelCheck()));
  results->resize(replies.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    (*results)[i] = ThreadSyscallResult{replies[i].result, false};
  }
  return absl::OkStatus();
}

absl::Status AgentThread::ReadMemory(const Identity& caller, uint64_t address,
                                     char* out, size_t length) {
  return ReadAgentMemory(*this, caller, address, out, length);
}

absl::Status AgentThread::WriteMemory(const Identity& caller, uint64_t address,
                                      absl::string_view data) {
  return WriteAgentMemory(*this, caller, address, data);
}

absl::StatusOr<int64_t> AgentThread::InstallFd(const Identity&, int fd,
                                           int target_fd, bool cloexec,
                                           const CancelCheck& cancelled) {
  // Installed by the agent itself (RECV_FD), with its owner's credentials:
  // whoever holds that socket gets only the caller's own fd.
  AgentCall call;
  call.op = PW_OP_RECV_FD;
  call.args[0] = static_cast<uint64_t>(static_cast<int64_t>(target_fd));
  call.args[1] = cloexec ? PW_RECV_FD_CLOEXEC : 0;
  call.fd_to_pass = fd;
  std::vector<AgentReply> replies;
  RETURN_IF_ERROR(ExplainError(agent_.connection->Run(
      absl::MakeConstSpan(&call, 1), &replies, cancelled)));
  // The agent's word: anything outside an fd number or an errno is a lie.
  const int64_t result = replies[0].result;
  if (result > INT32_MAX || (result < 0 && !IsSyscallError(result))) {
    return -EPROTO;
  }
  return result;
}

void AgentThread::NoteExit(const procwarp::v1::ExitStatus& status) {
  absl::MutexLock lock(&mu_);
  noted_exit_ = status;
  if (exit_status_.has_value() && exit_status_->how_case() ==
                                      procwarp::v1::ExitStatus::HOW_NOT_SET) {
    exit_status_ = status;
  }
}

bool AgentThread::Release(ReleaseReason reason, int exit_code) {
  // Daemon shutdown: a keeper holds its socket, the next daemon takes over.
  if (reason == ReleaseReason::kShutdown && lifetime_.outlives_daemon) {
    return true;
  }
  return reason == ReleaseReason::kExitThread ? Exit(exit_code) : Kill();
}

procwarp::v1::ThreadInfo AgentThread::Info() {
  procwarp::v1::ThreadInfo info;
  const auto& request = request_;
  info.set_id(id());
  info.set_kind(procwarp::v1::THREAD_KIND_AGENT);
  info.set_pid(agent_.pid);
  info.set_namespace_pid(agent_.connection->hello().pid);
  info.set_uid(owner().uid);
  info.set_gid(owner().gid);
  *info.mutable_owner() = owner().ToProto();
  info.set_persistent(persistent());
  *info.mutable_namespaces() = request.namespaces();
  info.set_created_unix_ns(created_unix_ns_);
  info.mutable_labels()->insert(request.labels().begin(),
                                request.labels().end());
  info.set_parent_thread_id(request.parent_thread_id());
  info.set_shares_fd_table(request.share_fd_table());
  absl::MutexLock lock(&mu_);
  if (exec_state_ == ExecState::kDone) {
    info.set_state(procwarp::v1::THREAD_STATE_EXITED);
  } else if (Reap(/*block=*/false)) {
    info.set_state(procwarp::v1::THREAD_STATE_EXITED);
    *info.mutable_exit_status() = *exit_status_;
  } else {
    info.set_state(procwarp::v1::THREAD_STATE_RUNNING);
  }
  return info;
}

}  // namespace procwarp
