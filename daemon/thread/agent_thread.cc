// See agent_thread.h.
#include "daemon/thread/agent_thread.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace procwarp {
namespace {

std::string Describe(const procwarp::v1::ExitStatus& status) {
  if (status.has_signal()) {
    return absl::StrCat("was killed by signal ", status.signal(), " (",
                        strsignal(status.signal()), ")");
  }
  return absl::StrCat("exited with status ", status.code());
}

}  // namespace

AgentThread::AgentThread(Options options, LaunchedAgent agent)
    : options_(std::move(options)),
      agent_(std::move(agent)),
      created_unix_ns_(absl::GetCurrentTimeNanos()) {}

AgentThread::~AgentThread() {
  Kill();
  // The connection refers to the pidfd: it goes first.
  agent_.connection.reset();
}

std::string AgentThread::Name() const {
  return absl::StrCat("thread ", options_.id, " (pid ", agent_.pid, ")");
}

bool AgentThread::Reap(bool block) {
  if (exit_status_.has_value()) return true;
  // The process is (or may become) the new program's: not ours to reap.
  if (exec_state_ != ExecState::kNone) return false;
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

absl::Status AgentThread::CheckAlive(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (exec_state_ == ExecState::kDone) {
      return absl::UnavailableError(
          absl::StrCat(Name(), " became a managed process by Exec"));
    }
  }
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

absl::Status AgentThread::WithLivePid(
    const std::function<absl::Status(pid_t)>& body) {
  absl::ReaderMutexLock lock(&mu_);
  if (exit_status_.has_value()) {
    return absl::UnavailableError(
        absl::StrCat(Name(), " ", Describe(*exit_status_)));
  }
  if (exec_state_ == ExecState::kDone) {
    return absl::UnavailableError(
        absl::StrCat(Name(), " became a managed process by Exec"));
  }
  // Not reaped: even if it died just now, the pid is still its zombie's.
  return body(agent_.pid);
}

void AgentThread::Exit(int code) {
  absl::Status status;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (exit_status_.has_value() || exec_state_ == ExecState::kDone) return;
  }
  AgentCall call;
  call.op = PW_OP_EXIT;
  call.args[0] = static_cast<uint32_t>(code);
  std::vector<AgentReply> replies;
  // A busy agent (blocked in a syscall) would make this wait forever: give
  // it a moment, then fall back to SIGKILL.
  absl::Time deadline = absl::Now() + absl::Seconds(2);
  status = agent_.connection->Run(absl::MakeConstSpan(&call, 1), &replies,
                                  [deadline] { return absl::Now() > deadline; });
  if (!status.ok()) {
    Kill();
    return;
  }
  absl::MutexLock lock(&mu_);
  Reap(/*block=*/true);
}

void AgentThread::Kill() {
  absl::MutexLock lock(&mu_);
  if (exit_status_.has_value() || exec_state_ == ExecState::kDone) return;
  syscall(SYS_pidfd_send_signal, agent_.pidfd.get(), SIGKILL, nullptr, 0);
  Reap(/*block=*/true);
}

procwarp::v1::ThreadInfo AgentThread::Info() {
  procwarp::v1::ThreadInfo info;
  const auto& request = options_.request;
  info.set_id(options_.id);
  info.set_pid(agent_.pid);
  info.set_namespace_pid(agent_.connection->hello().pid);
  info.set_uid(options_.owner.uid);
  info.set_gid(options_.owner.gid);
  *info.mutable_owner() = options_.owner.ToProto();
  info.set_persistent(options_.persistent);
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
