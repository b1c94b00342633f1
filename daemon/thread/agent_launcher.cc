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
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/protocol.h"
#include "daemon/process/spawn_plan.h"
#include "daemon/process/spawner.h"
#include "daemon/util/errno_status.h"
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

// The pid (in the daemon's pid namespace) of the process behind `pidfd`.
absl::StatusOr<pid_t> PidOfPidfd(int pidfd) {
  std::ifstream fdinfo(absl::StrCat("/proc/self/fdinfo/", pidfd));
  std::string line;
  while (std::getline(fdinfo, line)) {
    if (line.rfind("Pid:", 0) == 0) {
      int pid = atoi(line.c_str() + 4);
      if (pid > 0) return pid;
      break;
    }
  }
  return absl::InternalError(
      absl::StrCat("reading the pid of pidfd ", pidfd, " from fdinfo"));
}

absl::Status WriteProcFile(const std::string& path, const std::string& text) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
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
    const std::string& name) {
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
  plan.parent_death_signal = SIGKILL;

  // Only the clone happens on the spawn thread (the agent's parent, for
  // PR_SET_PDEATHSIG); the wait for its execve happens here, so a caller who
  // stops its agent before execve holds only its own call, never the spawn
  // thread every caller shares.
  absl::StatusOr<PendingSpawn> pending =
      absl::InternalError("the spawn thread did not run");
  RunOnSpawnThread([&] { pending = StartSpawn(std::move(plan)); });
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
  absl::StatusOr<std::unique_ptr<AgentConnection>> connection =
      AgentConnection::Open(std::move(ours), agent.pidfd.get(), name);
  if (!connection.ok()) {
    // Never leave a half-started agent (or its zombie) behind.
    KillAndReap(agent.pidfd.get());
    return connection.status();
  }
  agent.connection = *std::move(connection);
  return agent;
}

absl::StatusOr<LaunchedAgent> AgentLauncher::CloneChild(
    AgentConnection& parent, uint64_t clone_flags, const Identity& owner,
    const std::string& name) {
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
  RETURN_IF_ERROR(parent.Run(absl::MakeConstSpan(&recv, 1), &replies));
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
  RETURN_IF_ERROR(parent.Run(absl::MakeConstSpan(&clone, 1), &replies));
  const int64_t result = replies[0].result;
  if (result < 0) {
    // Nothing was created; the parent keeps the child's socket: drop it.
    parent.Syscall(SYS_close, {static_cast<uint64_t>(child_sock)}).IgnoreError();
    return ErrnoStatus(static_cast<int>(-result),
                       absl::StrCat("clone(flags=", absl::Hex(clone_flags),
                                    ") in the parent thread"));
  }
  // Under CLONE_FILES the shared table keeps the child's socket open for
  // both agents; the parent must leave it alone (closing it would cut the
  // child off), so it shows in the parent's fds too.
  LaunchedAgent agent;
  agent.pidfd = std::move(replies[0].fd);
  if (!agent.pidfd) {
    return absl::InternalError(
        "clone in the parent thread: the reply carried no pidfd");
  }
  absl::StatusOr<pid_t> pid = PidOfPidfd(agent.pidfd.get());
  if (!pid.ok()) {
    KillAndReap(agent.pidfd.get());
    return pid.status();
  }
  agent.pid = *pid;
  absl::StatusOr<std::unique_ptr<AgentConnection>> connection =
      AgentConnection::Open(std::move(ours), agent.pidfd.get(), name);
  if (!connection.ok()) {
    KillAndReap(agent.pidfd.get());
    return connection.status();
  }
  agent.connection = *std::move(connection);
  if ((clone_flags & CLONE_NEWUSER) != 0) {
    // The daemon (root outside) writes the maps: no setgroups "deny" is
    // needed, and the child cannot map anything but its owner.
    std::string proc = absl::StrCat("/proc/", agent.pid);
    absl::Status mapped =
        WriteProcFile(proc + "/uid_map", absl::StrCat("0 ", owner.uid, " 1\n"));
    if (mapped.ok()) {
      mapped = WriteProcFile(proc + "/gid_map",
                             absl::StrCat("0 ", owner.gid, " 1\n"));
    }
    if (!mapped.ok()) {
      agent.connection.reset();
      KillAndReap(agent.pidfd.get());
      return mapped;
    }
  }
  return agent;
}

}  // namespace procwarp
