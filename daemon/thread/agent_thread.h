// AgentThread: one running procwarp-agent as the daemon keeps it: its handle
// id and owner, its pidfd and connection, and how it ended.
//
// The agent is the daemon's child and is reaped only by Kill()/Exit(), so its
// pid cannot be recycled while anyone uses it: code that names the pid (e.g.
// process_vm_readv) runs inside WithLivePid, which holds off the reaping.
#ifndef PROCWARP_DAEMON_THREAD_AGENT_THREAD_H_
#define PROCWARP_DAEMON_THREAD_AGENT_THREAD_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/server/identity.h"
#include "daemon/thread/agent_connection.h"
#include "daemon/thread/agent_launcher.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp {

class AgentThread {
 public:
  struct Options {
    std::string id;
    Identity owner;
    uint64_t session_id = 0;
    bool persistent = false;
    procwarp::v1::CreateThreadRequest request;
  };
  AgentThread(Options options, LaunchedAgent agent);
  ~AgentThread();  // kills the agent if it still runs
  AgentThread(const AgentThread&) = delete;
  AgentThread& operator=(const AgentThread&) = delete;

  const std::string& id() const { return options_.id; }
  const Identity& owner() const { return options_.owner; }
  uint64_t session_id() const { return options_.session_id; }
  bool persistent() const { return options_.persistent; }
  pid_t pid() const { return agent_.pid; }
  int pidfd() const { return agent_.pidfd.get(); }
  AgentConnection& connection() { return *agent_.connection; }

  // "thread ID (pid N)", for messages.
  std::string Name() const;

  // UNAVAILABLE (naming how it ended) once the agent is gone. Waits up to
  // `grace` for it to finish dying: after a broken socket the exit is
  // usually microseconds away (the kernel closes a dying task's files before
  // it becomes waitable).
  absl::Status CheckAlive(absl::Duration grace = absl::ZeroDuration());

  // Runs `body(pid)` while the pid is guaranteed to still be the agent's;
  // UNAVAILABLE if it is gone already.
  absl::Status WithLivePid(const std::function<absl::Status(pid_t)>& body);

  // Exec support. While an execve is under way the thread is never reaped
  // here (the exit status is the new program's, for the process table), and
  // once it has succeeded the thread is done: Kill/Exit leave the process
  // alone and every use is UNAVAILABLE. BeginExec fails if the thread is
  // gone or already exec'ing.
  absl::Status BeginExec();
  void EndExec(bool succeeded);

  // Asks the agent to exit_group(code); SIGKILL if it cannot. Reaps it.
  void Exit(int code);
  // SIGKILL and reap; idempotent.
  void Kill();

  procwarp::v1::ThreadInfo Info();

 private:
  // Reaps the agent if it has exited (blocking: wait for it). True once
  // reaped.
  bool Reap(bool block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  LaunchedAgent agent_;
  const int64_t created_unix_ns_;
  // Readers: users of the pid. Writer: the reaper.
  absl::Mutex mu_;
  std::optional<procwarp::v1::ExitStatus> exit_status_ ABSL_GUARDED_BY(mu_);
  enum class ExecState { kNone, kInProgress, kDone };
  ExecState exec_state_ ABSL_GUARDED_BY(mu_) = ExecState::kNone;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_AGENT_THREAD_H_
