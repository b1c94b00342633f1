// See agent_launcher.h.
#include "daemon/thread/agent_launcher.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/protocol.h"
#include "daemon/process/spawn_plan.h"
#include "daemon/process/spawner.h"
#include "daemon/security/cloned_child.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/fault_point.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

constexpr char kInstalledAgent[] = "/usr/local/libexec/procwarp/procwarp-agent";
// Deep pipelines need room in both directions (DESIGN.md: a default buffer
// holds ~280 small messages). Root may exceed the wmem/rmem sysctls.
constexpr int kSocketBufferBytes = 4 << 20;

void GrowSocketBuffers(int fd) {
  int size = kSocketBufferBytes;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
}

// The daemon's end and the agent's end of a new agent socket, with grown
// buffers.
absl::Status MakeAgentSocketPair(UniqueFd* ours, UniqueFd* theirs) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoStatus(errno, "socketpair(AF_UNIX, SOCK_STREAM)");
  }
  ours->Reset(sv[0]);
  theirs->Reset(sv[1]);
  GrowSocketBuffers(ours->get());
  GrowSocketBuffers(theirs->get());
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenAgent(const std::string& path) {
  if (path.empty()) {
    return absl::FailedPreconditionError(
        "no procwarp-agent binary found next to the daemon or in " +
        std::string(kInstalledAgent) + "; start procwarpd with --agent_path");
  }
  UniqueFd fd(open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd) {
    return ErrnoStatus(errno, absl::StrCat("open(agent binary ", path, ")"));
  }
  return fd;
}

// Writes /proc/PID/`name` of the process behind `dir`.
absl::Status WriteProcFile(const ProcDir& dir, const char* name,
                           const std::string& text) {
  const std::string path = absl::StrCat("/proc/", dir.pid(), "/", name);
  UniqueFd fd(openat(dir.fd(), name, O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open(", path, ")"));
  if (write(fd.get(), text.data(), text.size()) !=
      static_cast<ssize_t>(text.size())) {
    return ErrnoStatus(errno, absl::StrCat("write(", path, ", \"", text, "\")"));
  }
  return absl::OkStatus();
}

void KillAndReap(int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  siginfo_t info{};
  waitid(static_cast<idtype_t>(P_PIDFD), pidfd, &info, WEXITED);
}

// Ends an agent that failed to start, unless its owner could no longer kill
// it (it exec'd a setuid program meanwhile): then it is left alone.
void EndFailedAgent(LaunchedAgent& agent, const Identity& owner) {
  agent.connection.reset();
  if (agent.proc.valid() &&
      absl::IsPermissionDenied(CheckCallerMayKill(owner, agent.proc, ""))) {
    return;
  }
  KillAndReap(agent.pidfd.get());
}

// Pins the agent's /proc directory and address space (see LaunchedAgent),
// then checks that `owner` could ptrace it: the address space pinned is then
// one the owner could reach itself (an execve before the pin shows in the
// check; one after it leaves the pinned one behind).
absl::Status PinAgent(LaunchedAgent& agent) {
  ASSIGN_OR_RETURN(agent.proc, ProcDir::Open(agent.pid, agent.pidfd.get()));
  absl::StatusOr<UniqueFd> memory = OpenProcessMemory(agent.proc);
  if (memory.ok()) {
    agent.memory = *std::move(memory);
  } else if (!absl::IsPermissionDenied(memory.status())) {
    return memory.status();
  }
  return absl::OkStatus();
}

// "Denies setgroups, then maps uid and gid 0 to the owner's" for a child in
// a new user namespace. setgroups goes first: once gid_map is written it can
// no longer be denied, and a caller able to drop its supplementary groups
// could read files that deny them access (mode 0604 with its group).
absl::Status MapUserNamespace(const ProcDir& child, const Identity& owner) {
  RETURN_IF_ERROR(WriteProcFile(child, "setgroups", "deny"));
  RETURN_IF_ERROR(
      WriteProcFile(child, "uid_map", absl::StrCat("0 ", owner.uid, " 1\n")));
  return WriteProcFile(child, "gid_map", absl::StrCat("0 ", owner.gid, " 1\n"));
}

}  // namespace

std::string FindAgentBinary() {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    std::string dir(exe, n);
    dir = dir.substr(0, dir.rfind('/'));
    for (const std::string& candidate :
         {dir + "/procwarp-agent", dir + "/../agent/procwarp-agent"}) {
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  if (access(kInstalledAgent, X_OK) == 0) return kInstalledAgent;
  return "";
}

AgentLauncher::AgentLauncher(const std::string& agent_path)
    : agent_fd_(OpenAgent(agent_path)), agent_path_(agent_path) {
  spawn_thread_ = std::thread([this] { SpawnLoop(); });
}

AgentLauncher::~AgentLauncher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  spawn_thread_.join();
}

void AgentLauncher::SpawnLoop() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](AgentLauncher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->tasks_.empty();
          },
          this));
      if (tasks_.empty()) return;  // stopping, nothing left
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void AgentLauncher::RunOnSpawnThread(std::function<void()> task) {
  absl::Notification finished;
  {
    absl::MutexLock lock(&mu_);
    tasks_.push_back([&] {
      task();
      finished.Notify();
    });
  }
  finished.WaitForNotification();
}

absl::StatusOr<LaunchedAgent> AgentLauncher::Launch(
    const procwarp::v1::Namespaces& namespaces, const Identity& caller,
    const std::string& name, bool outlive_daemon) {
  if (!agent_fd_.ok()) return agent_fd_.status();
  UniqueFd ours;
  UniqueFd theirs;
  RETURN_IF_ERROR(MakeAgentSocketPair(&ours, &theirs));

  // The same validation and namespace rules as Processes.Spawn.
  procwarp::v1::SpawnRequest request;
  request.add_argv("procwarp-agent");
  request.set_path(absl::StrCat("/proc/self/fd/", agent_fd_->get()));
  *request.mutable_namespaces() = namespaces;
  ASSIGN_OR_RETURN(SpawnPlan plan, BuildSpawnPlan(request, caller));
  plan.exec_fd = agent_fd_->get();
  plan.inherited_fds.push_back({theirs.get(), PW_AGENT_DEFAULT_SOCKET_FD});
  plan.parent_death_signal = outlive_daemon ? 0 : SIGKILL;

  // Only the clone happens on the spawn thread (the agent's parent, for
  // PR_SET_PDEATHSIG); the wait for its execve happens here, so a caller who
  // stops its agent before execve holds only its own call, never the spawn
  // thread every caller shares.
  absl::StatusOr<PendingSpawn> pending =
      absl::InternalError("the spawn thread did not run");
  RunOnSpawnThread([&] { pending = StartSpawn(std::move(plan)); });
  if (pending.ok()) FaultPoint("create", 0, pending->pidfd());  // not exec'd
  absl::StatusOr<SpawnedChild> child =
      pending.ok() ? FinishSpawn(*std::move(pending), SpawnWait())
                   : pending.status();
  if (!child.ok()) {
    return absl::Status(child.status().code(),
                        absl::StrCat("starting procwarp-agent (", agent_path_,
                                     "): ", child.status().message()));
  }
  theirs.Reset();
  LaunchedAgent agent;
  agent.pid = child->pid;
  agent.pidfd = std::move(child->pidfd);
  FaultPoint("create", 1, agent.pidfd.get());  // exec'd, no hello yet
  absl::StatusOr<std::unique_ptr<AgentConnection>> connection =
      AgentConnection::Open(std::move(ours), agent.pidfd.get(), name);
  if (!connection.ok()) {
    // Never leave a half-started agent (or its zombie) behind.
    KillAndReap(agent.pidfd.get());
    return connection.status();
  }
  agent.connection = *std::move(connection);
  FaultPoint("create", 2, agent.pidfd.get());  // said hello, not yet pinned
  // After the hello: the agent binary runs.
  absl::Status pinned = PinAgent(agent);
  if (pinned.ok()) pinned = CheckCallerMayPtrace(caller, agent.proc, name);
  if (!pinned.ok()) {
    EndFailedAgent(agent, caller);
    return pinned;
  }
  return agent;
}

absl::StatusOr<LaunchedAgent> AgentLauncher::Reconnect(
    UniqueFd pidfd, UniqueFd socket, const pw_agent_hello& hello,
    const Identity& owner, const std::string& name) {
  LaunchedAgent agent;
  ASSIGN_OR_RETURN(agent.pid, PidOfPidfd(pidfd.get()));
  agent.pidfd = std::move(pidfd);
  ASSIGN_OR_RETURN(agent.connection,
                   AgentConnection::Adopt(std::move(socket), agent.pidfd.get(),
                                          name, hello));
  // After the answer: the agent binary still runs (an exec'd one could not
  // answer: its socket is close-on-exec).
  absl::Status pinned = PinAgent(agent);
  if (pinned.ok()) pinned = CheckCallerMayPtrace(owner, agent.proc, name);
  if (!pinned.ok()) {
    agent.connection.reset();
    return pinned;
  }
  return agent;
}

absl::StatusOr<LaunchedAgent> AgentLauncher::CloneChild(
    const CloneParent& parent, uint64_t clone_flags, const Identity& owner,
    const std::string& name, const std::function<absl::Status(pid_t)>& claim,
    bool* forged) {
  *forged = false;
  UniqueFd ours;
  UniqueFd theirs;
  RETURN_IF_ERROR(MakeAgentSocketPair(&ours, &theirs));

  // The child's end goes into the parent first (close-on-exec, like every
  // agent socket), then the parent clones. Two round trips: CLONE needs the
  // fd number RECV_FD picked.
  AgentCall recv;
  recv.op = PW_OP_RECV_FD;
  recv.args[0] = static_cast<uint64_t>(-1);
  recv.args[1] = PW_RECV_FD_CLOEXEC;
  recv.fd_to_pass = theirs.get();
  std::vector<AgentReply> replies;
  RETURN_IF_ERROR(
      parent.connection->Run(absl::MakeConstSpan(&recv, 1), &replies));
  theirs.Reset();
  const int64_t child_sock = replies[0].result;
  if (child_sock < 0) {
    return ErrnoStatus(static_cast<int>(-child_sock),
                       "RECV_FD(child socket) in the parent thread");
  }
  AgentCall clone;
  clone.op = PW_OP_CLONE;
  clone.flags = PW_REQ_FLUSH_FIRST;
  clone.args[0] = clone_flags | CLONE_PARENT;
  clone.args[1] = static_cast<uint64_t>(child_sock);
  RETURN_IF_ERROR(
      parent.connection->Run(absl::MakeConstSpan(&clone, 1), &replies));
  const int64_t result = replies[0].result;
  if (result < 0) {
    // Nothing was created; the parent keeps the child's socket: drop it.
    parent.connection->Syscall(SYS_close, {static_cast<uint64_t>(child_sock)})
        .IgnoreError();
    return ErrnoStatus(static_cast<int>(-result),
                       absl::StrCat("clone(flags=", absl::Hex(clone_flags),
                                    ") in the parent thread"));
  }
  // Under CLONE_FILES the shared table keeps the child's socket open for
  // both agents; the parent must leave it alone (closing it would cut the
  // child off), so it shows in the parent's fds too.

  // From here on the reply is only a claim (see CloneChild's comment). A
  // refused claim leaves its process untouched: it may be anyone's.
  const std::string what =
      absl::StrCat("the process named in the CLONE reply of ", parent.name);
  auto refuse = [&](const absl::Status& why) {
    *forged = true;
    return absl::PermissionDeniedError(why.message());
  };
  UniqueFd pidfd = std::move(replies[0].fd);
  if (!pidfd) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat(what,
                     ": the reply carried no pidfd, which no agent does; "
                     "the reply was forged (its socket taken over?)")));
  }
  absl::StatusOr<pid_t> pid = PidOfPidfd(pidfd.get());
  if (!pid.ok()) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat(what, ": ", pid.status().message(),
                     "; the reply was forged (its socket taken over?)")));
  }
  // CLONE_PARENT: a real child's parent is the parent agent's.
  ASSIGN_OR_RETURN(ProcessStatus parent_status,
                   ReadProcessStatus(*parent.proc));
  LaunchedAgent agent;
  agent.pid = *pid;
  agent.pidfd = std::move(pidfd);
  RETURN_IF_ERROR(PinAgent(agent));
  absl::Status verified =
      VerifyClonedChild(agent.proc, parent_status.ppid, owner, what);
  if (verified.ok()) verified = claim(agent.pid);
  if (absl::IsPermissionDenied(verified)) return refuse(verified);
  RETURN_IF_ERROR(verified);

  // It is the owner's new child: ours to end if it cannot be set up.
  absl::StatusOr<std::unique_ptr<AgentConnection>> connection =
      AgentConnection::Open(std::move(ours), agent.pidfd.get(), name);
  if (!connection.ok()) {
    KillAndReap(agent.pidfd.get());
    return connection.status();
  }
  agent.connection = *std::move(connection);
  if ((clone_flags & CLONE_NEWUSER) != 0) {
    // The daemon (root outside) writes the maps, so they can only ever map
    // the owner's own ids.
    absl::Status mapped = MapUserNamespace(agent.proc, owner);
    if (!mapped.ok()) {
      agent.connection.reset();
      KillAndReap(agent.pidfd.get());
      return mapped;
    }
  }
  return agent;
}

}  // namespace procwarp
