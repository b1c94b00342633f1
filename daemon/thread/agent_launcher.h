// AgentLauncher: starts procwarp-agent processes ("agent threads") for
// callers: as the caller's uid/gids, in the namespaces asked for, with the
// daemon's end of a socketpair connected and a pidfd held from the start.
//
// Agents must die with the daemon, so they get PR_SET_PDEATHSIG(SIGKILL).
// The kernel sends that signal when the spawning *thread* exits, and gRPC's
// worker threads come and go; so every agent is cloned from one dedicated
// thread that lives as long as the launcher. Child agents (CloneChild) are
// cloned with CLONE_PARENT, so they share that parent thread, and set
// PDEATHSIG themselves.
//
// Every agent's /proc/PID directory and address space are pinned once it runs
// (LaunchedAgent::proc, ::memory), and only after checking that its owner
// could ptrace it then: the thread's later memory accesses go through that
// pinned address space, so an execve behind the daemon's back (which
// replaces it) can never hand the daemon's privileges over the new program.
//
// The agent binary is opened once (O_PATH) and executed through
// /proc/self/fd/N, so an unprivileged caller's agent needs execute permission
// on the file only, not search permission on every directory above it (a
// build tree under /root, say).
#ifndef PROCWARP_DAEMON_THREAD_AGENT_LAUNCHER_H_
#define PROCWARP_DAEMON_THREAD_AGENT_LAUNCHER_H_

#include <sys/types.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/server/identity.h"
#include "daemon/thread/agent_connection.h"
#include "daemon/util/unique_fd.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp {

// A started agent. The connection refers to `pidfd`, so keep them together
// (and destroy the connection first).
struct LaunchedAgent {
  pid_t pid = -1;
  UniqueFd pidfd;
  std::unique_ptr<AgentConnection> connection;
  // /proc/PID of the agent, opened while it was known to be the agent.
  ProcDir proc;
  // Its /proc/PID/mem, opened then too: the agent's own address space, kept
  // (see OpenProcessMemory). Invalid where the kernel refuses the daemon;
  // memory then goes in-band through the agent.
  UniqueFd memory;
};

// The parent of a child thread, as CloneChild needs it.
struct CloneParent {
  AgentConnection* connection = nullptr;
  const ProcDir* proc = nullptr;  // the parent agent's /proc/PID
  std::string name;               // "thread ID (pid N)", for messages
};

// The agent binary to use when --agent_path is not given: next to the
// daemon executable, then in the Bazel output layout (<exe dir>/../agent),
// then the installed location. Empty when none exists.
std::string FindAgentBinary();

class AgentLauncher {
 public:
  // Opens the agent binary at `agent_path`; a failure is kept and reported
  // by every Launch (the daemon still serves everything else).
  explicit AgentLauncher(const std::string& agent_path);
  ~AgentLauncher();
  AgentLauncher(const AgentLauncher&) = delete;
  AgentLauncher& operator=(const AgentLauncher&) = delete;

  // OK when agents can be launched at all.
  absl::Status status() const { return agent_fd_.status(); }

  // Starts an agent for `caller` in `namespaces` and reads its hello.
  // `name` goes into the connection's error messages. With
  // `outlive_daemon` (a persistent thread while restart state is kept) it
  // gets no PR_SET_PDEATHSIG: a keeper holds its socket end instead, and the
  // next daemon reconnects to it (Reconnect).
  absl::StatusOr<LaunchedAgent> Launch(const procwarp::v1::Namespaces& namespaces,
                                       const Identity& caller,
                                       const std::string& name,
                                       bool outlive_daemon = false);

  // Takes over an agent a previous daemon started (docs/architecture.md,
  // "Restart without loss"): `pidfd` proven to be its process, `socket` the
  // old daemon's end of its socket, `hello` what it said at start. The
  // connection is resynchronised (AgentConnection::Adopt), then the agent
  // is pinned and checked exactly as at launch: `owner` must be able to
  // ptrace it now. On failure nothing is done to the process.
  static absl::StatusOr<LaunchedAgent> Reconnect(UniqueFd pidfd,
                                                 UniqueFd socket,
                                                 const pw_agent_hello& hello,
                                                 const Identity& owner,
                                                 const std::string& name);

  // Asks the agent behind `parent` to clone a child agent of itself
  // (PW_OP_CLONE with CLONE_PARENT, so the child is the daemon's to reap)
  // with `clone_flags` (CLONE_FILES, CLONE_NEW*), and reads its hello. For a
  // new user namespace, denies setgroups and writes the child's
  // uid_map/gid_map as "0 <owner uid> 1" / "0 <owner gid> 1" before anything
  // is sent to it (the child waits for its first request). Errors of the
  // clone itself carry its errno.
  //
  // The pidfd in the agent's reply is a claim, not evidence (the caller may
  // have taken over the agent's socket): the process is taken only if
  // VerifyClonedChild (daemon/security/cloned_child.h) shows it is a new
  // child of the parent and `claim(pid)` (the thread table: not another
  // thread's process) agrees. Otherwise nothing at all is done to it,
  // `*forged` is set (the parent's agent lied) and the error says why.
  absl::StatusOr<LaunchedAgent> CloneChild(
      const CloneParent& parent, uint64_t clone_flags, const Identity& owner,
      const std::string& name, const std::function<absl::Status(pid_t)>& claim,
      bool* forged);

 private:
  // Runs `task` on the spawning thread and waits for it.
  void RunOnSpawnThread(std::function<void()> task);
  void SpawnLoop();

  absl::StatusOr<UniqueFd> agent_fd_;
  std::string agent_path_;

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread spawn_thread_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_AGENT_LAUNCHER_H_
