// AgentThread: the agent backend of the Thread interface (thread.h): one
// running procwarp-agent as the daemon keeps it: its handle id and owner, its
// pidfd, /proc directory, pinned address space and connection, and how it
// ended.
//
// The agent runs as its owner, so the owner can change it behind the
// daemon's back: take over its socket, execve a setuid program in it, make
// it non-dumpable. Everything the daemon does to the agent's process with
// its own privileges therefore goes through this class, which decides at the
// time of use whether the caller could do it itself (ActOnProcess, memory
// through the pinned address space, Kill). What goes through the agent
// itself (syscalls, in-band memory, RECV_FD) runs with the owner's
// credentials and is the kernel's to check.
//
// Nothing here names the agent by pid: the pidfd and the /proc directory are
// bound to the process, so a recycled pid is never touched.
#ifndef PROCWARP_DAEMON_THREAD_AGENT_THREAD_H_
#define PROCWARP_DAEMON_THREAD_AGENT_THREAD_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/server/identity.h"
#include "daemon/thread/agent_connection.h"
#include "daemon/thread/agent_launcher.h"
#include "daemon/thread/thread.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp {

// How an agent thread relates to daemon restarts (docs/architecture.md,
// "Restart without loss").
struct AgentLifetime {
  // A persistent thread whose agent a keeper holds: daemon shutdown lets it
  // run on (Release(kShutdown) and the destructor leave it alone).
  bool outlives_daemon = false;
  // Started by an earlier daemon and reconnected: not this daemon's child,
  // so its end shows on its pidfd and its exit status only comes from a
  // keeper (NoteExit), if at all.
  bool adopted = false;
  // When it was created (0: now).
  int64_t created_unix_ns = 0;
};

class AgentThread final : public Thread {
 public:
  AgentThread(Handle handle, procwarp::v1::CreateThreadRequest request,
              LaunchedAgent agent, AgentLifetime lifetime = {});
  // Kills the agent if it still runs, unless it outlives the daemon.
  ~AgentThread() override;

  const procwarp::v1::CreateThreadRequest& request() const { return request_; }
  bool outlives_daemon() const { return lifetime_.outlives_daemon; }
  // How an adopted agent ended, as its keeper (its parent) saw it.
  void NoteExit(const procwarp::v1::ExitStatus& status);

  Kind kind() const override { return Kind::kAgent; }
  AgentThread* agent() override { return this; }
  pid_t pid() const override { return agent_.pid; }
  int pidfd() const override { return agent_.pidfd.get(); }
  // /proc/PID of the agent, bound to its process.
  const ProcDir& proc() const { return agent_.proc; }
  // The agent's own protocol, for what only an agent does (Exec, CLONE);
  // everything else goes through the Thread operations.
  AgentConnection& connection() { return *agent_.connection; }

  // "thread ID (pid N)", for messages.
  std::string Name() const override;

  // Thread operations. Syscalls, InstallFd (RECV_FD) and the in-band memory
  // fallback go through the agent itself, with its owner's credentials: the
  // kernel checks them, so `caller` is not consulted there.
  absl::Status Syscalls(const Identity& caller,
                        absl::Span<const ThreadSyscall> calls,
                        std::vector<ThreadSyscallResult>* results,
                        const OperationOptions& options = {}) override;
  absl::Status ReadMemory(const Identity& caller, uint64_t address, char* out,
                          size_t length) override;
  absl::Status WriteMemory(const Identity& caller, uint64_t address,
                           absl::string_view data) override;
  absl::StatusOr<int64_t> InstallFd(const Identity& caller, int fd, int target_fd,
                                bool cloexec,
                                const CancelCheck& cancelled = nullptr) override;
  // Exit for kExitThread, Kill otherwise.
  bool Release(ReleaseReason reason, int exit_code = 0) override;
  absl::Status ReleaseRefusal() override { return KillRefusal(); }
  bool Gone() override { return Reaped(); }

  // UNAVAILABLE (naming how it ended) once the agent is gone. Waits up to
  // `grace` for it to finish dying: after a broken socket the exit is
  // usually microseconds away (the kernel closes a dying task's files before
  // it becomes waitable).
  absl::Status CheckAlive(absl::Duration grace = absl::ZeroDuration()) override;

  // Runs `op` on the agent's process with the daemon's own privileges
  // (reading its maps or fd table, fetching one of its fds) for `caller`,
  // and then decides whether `caller` could have done it itself *at that
  // moment*: the kernel's ptrace rule (daemon/security/ptrace_access.h) and
  // no execve since the thread started. Checking after the act is what makes
  // it safe: an execve (or credential change) that took effect before `op`
  // shows in the check, and one after it means `op` saw the agent. On denial
  // `op`'s result must be discarded (PERMISSION_DENIED says why;
  // FAILED_PRECONDITION for an execve that kept the owner's credentials;
  // UNAVAILABLE once it is gone).
  absl::Status ActOnProcess(
      const Identity& caller,
      const std::function<absl::Status(const ProcDir&)>& op) override;

  // /proc/PID/mem of the agent as it started (see LaunchedAgent::memory):
  // reads and writes through it reach the agent's own memory or nothing, so
  // they need no check. -1 where the kernel refused it.
  int memory_fd() const { return agent_.memory.get(); }
  // Why the pinned address space is gone (reads and writes returned 0):
  // UNAVAILABLE once the agent has died, PERMISSION_DENIED or
  // FAILED_PRECONDITION after an execve (as ActOnProcess).
  absl::Status ExplainLostMemory(const Identity& caller);

  // The agent's reply to a CLONE was forged (see AgentLauncher::CloneChild):
  // ends it (Kill) and makes every later use say `why`.
  void MarkCompromised(const std::string& why);

  // Exec support. While an execve is under way the thread is never reaped
  // here (the exit status is the new program's, for the process table), and
  // once it has succeeded the thread is done: Kill/Exit leave the process
  // alone and every use is UNAVAILABLE. BeginExec fails if the thread is
  // gone or already exec'ing.
  absl::Status BeginExec();
  void EndExec(bool succeeded);

  // Asks the agent to exit_group(code) and waits (boundedly) for it to go;
  // then Kill, which reaps it (or SIGKILLs it first if it is still there).
  // False (see Kill) when it could not be ended.
  bool Exit(int code);
  // SIGKILL and reap; idempotent. Only where the owner could send the signal
  // itself (daemon/security/ptrace_access.h, CheckCallerMayKill): an agent
  // that exec'd a setuid program which made itself root is left alone, and
  // Kill returns false (KillRefusal() says why: PERMISSION_DENIED). It also
  // returns false (UNAVAILABLE) when the killed agent cannot be reaped
  // within a bound (a tracer holds it). Reaped() tells later whether it
  // ended anyway.
  bool Kill();
  absl::Status KillRefusal();
  // True once its exit status is collected (its pid may be someone else's).
  // Never blocks: false while another call holds the thread.
  bool Reaped();

  procwarp::v1::ThreadInfo Info() override;

 private:
  // Reaps the agent if it has exited (blocking: wait for it). True once
  // reaped.
  bool Reap(bool block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNAVAILABLE (or the compromise) when the thread can no longer be used at
  // all; no /proc access.
  absl::Status CheckUsable();
  // True when the agent's address space is no longer the one pinned when it
  // started while the process lives on: it exec'd. Sticky.
  bool AddressSpaceReplaced();
  // The check after an act on the process (see ActOnProcess).
  absl::Status CheckAccess(const Identity& caller);
  // What to say about an agent that exec'd, for `who`.
  absl::Status ExecError(const Identity& who);

  const procwarp::v1::CreateThreadRequest request_;
  LaunchedAgent agent_;
  const AgentLifetime lifetime_;
  const int64_t created_unix_ns_;
  // Readers: users of the pid. Writer: the reaper.
  absl::Mutex mu_;
  std::optional<procwarp::v1::ExitStatus> exit_status_ ABSL_GUARDED_BY(mu_);
  // An adopted agent's exit status from its keeper (NoteExit).
  std::optional<procwarp::v1::ExitStatus> noted_exit_ ABSL_GUARDED_BY(mu_);
  enum class ExecState { kNone, kInProgress, kDone };
  ExecState exec_state_ ABSL_GUARDED_BY(mu_) = ExecState::kNone;
  // Set when the agent's reply was forged (MarkCompromised).
  std::string compromised_ ABSL_GUARDED_BY(mu_);
  // Why the last Kill did not end it.
  absl::Status kill_refusal_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> address_space_replaced_{false};
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_AGENT_THREAD_H_
