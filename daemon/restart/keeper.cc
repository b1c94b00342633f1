// See keeper.h.
#include "daemon/restart/keeper.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd_passing.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/pidfd.h"
#include "proto/procwarp/state/v1/state.pb.h"

namespace procwarp {
namespace {

using procwarp::state::v1::FdKind;
using procwarp::state::v1::KeeperReply;
using procwarp::state::v1::KeeperRequest;

// What the keeper holds for one managed process.
struct HeldGroup {
  std::vector<FdKind> kinds;
  std::vector<UniqueFd> fds;
  pid_t pid = -1;  // from its pidfd, to match children the keeper reaps
  bool exited = false;
  procwarp::v1::ExitStatus exit_status;
};

class Keeper {
 public:
  Keeper(std::string state_dir, pid_t daemon_pid, UniqueFd daemon_link)
      : state_dir_(std::move(state_dir)), daemon_pid_(daemon_pid) {
    connections_.push_back(std::move(daemon_link));
  }

  [[noreturn]] void Run() {
    SetUp();
    for (;;) {
      if (daemon_gone_ && groups_.empty()) Exit();
      std::vector<pollfd> fds;
      fds.push_back({signal_fd_.get(), POLLIN, 0});
      fds.push_back({listen_fd_.get(), POLLIN, 0});
      for (const UniqueFd& c : connections_) fds.push_back({c.get(), POLLIN, 0});
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        LogError(ErrnoStatus(errno, "keeper: poll").ToString());
        Exit();
      }
      if (fds[0].revents) OnSignal();
      if (fds[1].revents & POLLIN) Accept();
      // Back to front, so closing one does not shift the others.
      for (size_t i = fds.size(); i-- > 2;) {
        if (fds[i].revents != 0 && !Serve(connections_[i - 2].get())) {
          connections_.erase(connections_.begin() + (i - 2));
        }
      }
    }
  }

 private:
  void SetUp() {
    prctl(PR_SET_NAME, "procwarp-keeper");
    // Orphans below the daemon come to the keeper, not to init.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal_fd_.Reset(signalfd(-1, &mask, SFD_CLOEXEC));
    signal(SIGPIPE, SIG_IGN);
    socket_path_ = absl::StrCat(state_dir_, "/", kKeeperSocketPrefix, getpid(),
                                kKeeperSocketSuffix);
    listen_fd_.Reset(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path_.size() >= sizeof(addr.sun_path)) {
      LogError(absl::StrCat("keeper: socket path too long: ", socket_path_));
      return;
    }
    memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
    unlink(socket_path_.c_str());
    // Only the owner of the 0700 state directory can reach it anyway; the
    // mode keeps it so if the directory's mode changes.
    mode_t old_umask = umask(0177);
    if (bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_.get(), 8) != 0) {
      LogError(ErrnoStatus(errno, absl::StrCat("keeper: bind/listen(", socket_path_, ")"))
                   .ToString());
      listen_fd_.Reset();
    }
    umask(old_umask);
  }

  [[noreturn]] void Exit() {
    if (!socket_path_.empty()) unlink(socket_path_.c_str());
    _exit(daemon_exit_code_);
  }

  void OnSignal() {
    signalfd_siginfo info{};
    while (read(signal_fd_.get(), &info, sizeof(info)) == sizeof(info)) {
      if (info.ssi_signo == SIGCHLD) {
        ReapChildren();
      } else if (!daemon_gone_) {
        // Stopping the keeper means stopping its daemon; what the daemon
        // manages stays (and so does the keeper, while it holds any of it).
        kill(daemon_pid_, info.ssi_signo);
      }
      // The signalfd is blocking: read one batch, then poll again.
      break;
    }
  }

  void ReapChildren() {
    for (;;) {
      siginfo_t info{};
      // Look first, reap second: until it is reaped the pid cannot be
      // reused, so matching it against the held pidfds is exact.
      if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
          info.si_pid == 0) {
        return;
      }
      const pid_t pid = info.si_pid;
      siginfo_t reaped{};
      if (waitid(P_PID, pid, &reaped, WEXITED) != 0) return;
      if (pid == daemon_pid_) {
        daemon_gone_ = true;
        daemon_exit_code_ = reaped.si_code == CLD_EXITED ? reaped.si_status : 0;
        continue;
      }
      for (auto it = groups_.begin(); it != groups_.end();) {
        HeldGroup& group = it->second;
        if (group.pid != pid || group.exited) {
          ++it;
          continue;
        }
        group.exited = true;
        group.exit_status = ExitStatusFromSiginfo(reaped);
        KeeperReply reply;
        reply.mutable_exited()->set_id(it->first);
        *reply.mutable_exited()->mutable_exit_status() = group.exit_status;
        bool told = false;
        for (const UniqueFd& c : connections_) told |= Send(c.get(), reply, {});
        // A daemon knows now (and drops it once recorded); one that does not
        // record this process never will, and must not keep it here forever.
        // Kept while no daemon listens, for the next one's Fetch.
        it = told ? groups_.erase(it) : std::next(it);
      }
    }
  }

  void Accept() {
    UniqueFd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) return;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        cred.uid != geteuid()) {
      return;  // only a daemon of the keeper's own uid
    }
    connections_.push_back(std::move(fd));
  }

  // Handles one message; false when the connection is over.
  bool Serve(int connection) {
    KeeperRequest request;
    std::vector<UniqueFd> received;
    if (!ReceiveKeeperMessage(connection, &request, &received)) return false;
    switch (request.op_case()) {
      case KeeperRequest::kPut:
        Put(request.put(), std::move(received));
        return true;
      case KeeperRequest::kDrop:
        groups_.erase(request.drop().id());
        return true;
      case KeeperRequest::kFetch:
        return Fetch(connection);
      default:
        return false;
    }
  }

  void Put(const KeeperRequest::Put& put, std::vector<UniqueFd> fds) {
    if (fds.size() != static_cast<size_t>(put.kinds_size())) return;
    HeldGroup group;
    for (int i = 0; i < put.kinds_size(); ++i) {
      group.kinds.push_back(put.kinds(i));
      if (put.kinds(i) == procwarp::state::v1::FD_KIND_PIDFD) {
        auto pid = PidOfPidfd(fds[i].get());
        if (pid.ok()) group.pid = *pid;
      }
    }
    group.fds = std::move(fds);
    groups_[put.id()] = std::move(group);
  }

  bool Fetch(int connection) {
    bool sent = SendGroups(connection);
    // Exits are told once (as in ReapChildren).
    for (auto it = groups_.begin(); it != groups_.end();) {
      it = sent && it->second.exited ? groups_.erase(it) : std::next(it);
    }
    return sent;
  }

  bool SendGroups(int connection) {
    for (const auto& [id, group] : groups_) {
      KeeperReply reply;
      auto* g = reply.mutable_group();
      g->set_id(id);
      for (FdKind kind : group.kinds) g->add_kinds(kind);
      g->set_exited(group.exited);
      if (group.exited) *g->mutable_exit_status() = group.exit_status;
      std::vector<int> fds;
      for (const UniqueFd& fd : group.fds) fds.push_back(fd.get());
      if (!Send(connection, reply, fds)) return false;
    }
    KeeperReply done;
    done.set_done(true);
    return Send(connection, done, {});
  }

  static bool Send(int connection, const KeeperReply& reply,
                   const std::vector<int>& fds) {
    return SendKeeperMessage(connection, reply, fds);
  }

  const std::string state_dir_;
  const pid_t daemon_pid_;
  bool daemon_gone_ = false;
  int daemon_exit_code_ = 0;
  std::string socket_path_;
  UniqueFd signal_fd_;
  UniqueFd listen_fd_;
  std::vector<UniqueFd> connections_;  // [0] starts as the own daemon's link
  std::map<std::string, HeldGroup> groups_;
};

}  // namespace

bool SendKeeperMessage(int socket, const google::protobuf::MessageLite& message,
                       const std::vector<int>& fds) {
  std::string bytes = message.SerializeAsString();
  return SendWithFds(socket, bytes.data(), bytes.size(), fds.data(), fds.size()) ==
         static_cast<ssize_t>(bytes.size());
}

bool ReceiveKeeperMessage(int socket, google::protobuf::MessageLite* message,
                          std::vector<UniqueFd>* fds) {
  // Far more than any keeper message (an id and a few enums).
  std::string buffer(64 * 1024, '\0');
  int raw[kMaxFdsPerMessage];
  size_t count = 0;
  ssize_t n = ReceiveWithFds(socket, buffer.data(), buffer.size(), raw,
                             kMaxFdsPerMessage, &count);
  fds->clear();
  for (size_t i = 0; i < count; ++i) fds->emplace_back(raw[i]);
  return n > 0 && message->ParseFromArray(buffer.data(), static_cast<int>(n));
}

absl::StatusOr<UniqueFd> ForkUnderKeeper(const std::string& state_dir) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return ErrnoStatus(errno, "socketpair(keeper link)");
  }
  UniqueFd keeper_end(pair[0]);
  UniqueFd daemon_end(pair[1]);
  // Blocked before the fork, so no SIGCHLD of the daemon is missed before
  // the keeper's signalfd exists.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  pid_t daemon = fork();
  if (daemon < 0) return ErrnoStatus(errno, "fork(daemon under keeper)");
  if (daemon == 0) {
    sigprocmask(SIG_UNBLOCK, &mask, nullptr);
    return daemon_end;
  }
  daemon_end.Reset();
  Keeper(state_dir, daemon, std::move(keeper_end)).Run();
}

}  // namespace procwarp
