// See listener.h.
#include "daemon/server/listener.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"
#include "grpcpp/server_posix.h"

namespace procwarp {
namespace {

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path '", path, "' is empty or longer than ",
        sizeof(addr.sun_path) - 1, " bytes"));
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// True when something accepts connections at `path`.
bool SomeoneListens(const sockaddr_un& addr) {
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return false;
  return connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr),
                 sizeof(addr)) == 0;
}

absl::Status MakeParentDirectory(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) return absl::OkStatus();
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {
    if (chmod(dir.c_str(), 0755) != 0) {
      return ErrnoStatus(errno, absl::StrCat("chmod(", dir.string(), ", 0755)"));
    }
  } else if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create socket directory ", dir.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status ApplySocketPermissions(const SocketOptions& options) {
  mode_t mode = options.mode;
  if (mode == 0) {
    struct group* group = options.group.empty() ? nullptr
                                                : getgrnam(options.group.c_str());
    if (group != nullptr) {
      if (chown(options.path.c_str(), -1, group->gr_gid) != 0) {
        return ErrnoStatus(errno, absl::StrCat("chown(", options.path,
                                               ", group=", options.group, ")"));
      }
      mode = 0660;
    } else {
      mode = 0600;
    }
  }
  if (chmod(options.path.c_str(), mode) != 0) {
    return ErrnoStatus(errno, absl::StrCat("chmod(", options.path, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UniqueFd> BindUnixSocket(const SocketOptions& options) {
  ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(options.path));
  RETURN_IF_ERROR(MakeParentDirectory(options.path));
  if (SomeoneListens(addr)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "another procwarpd is already serving ", options.path));
  }
  // Nobody answers: whatever is there is a stale socket from a daemon that
  // died. Only remove sockets, never a file someone put there by mistake.
  struct stat st {};
  if (lstat(options.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          options.path, " exists and is not a socket; refusing to remove it"));
    }
    if (unlink(options.path.c_str()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("unlink(", options.path, ")"));
    }
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "socket(AF_UNIX)");
  // Create the socket file with no access, then open it up: no window where
  // the file exists with the umask's permissions.
  mode_t old_umask = umask(0777);
  int rc = bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  umask(old_umask);
  if (rc != 0) {
    return ErrnoStatus(bind_errno, absl::StrCat("bind(", options.path, ")"));
  }
  RETURN_IF_ERROR(ApplySocketPermissions(options));
  if (listen(fd.get(), SOMAXCONN) != 0) {
    return ErrnoStatus(errno, absl::StrCat("listen(", options.path, ")"));
  }
  return fd;
}

absl::StatusOr<std::optional<UniqueFd>> TakeActivatedSocket(
    std::vector<std::pair<std::string, UniqueFd>>* stored) {
  char** names = nullptr;
  int n = sd_listen_fds_with_names(/*unset_environment=*/1, &names);
  if (n < 0) return ErrnoStatus(-n, "sd_listen_fds");
  // Every fd passed is ours to own (close-on-exec) or close, whatever else
  // goes wrong.
  std::vector<std::pair<std::string, UniqueFd>> passed;
  for (int i = 0; i < n; ++i) {
    int fd = SD_LISTEN_FDS_START + i;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    passed.emplace_back(names != nullptr && names[i] != nullptr ? names[i] : "",
                        UniqueFd(fd));
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) free(names[i]);
    free(names);
  }
  std::optional<UniqueFd> socket;
  for (auto& [name, fd] : passed) {
    if (sd_is_socket_unix(fd.get(), SOCK_STREAM, /*listening=*/1, nullptr, 0) > 0) {
      if (socket.has_value()) {
        return absl::InvalidArgumentError(
            "systemd passed more than one listening socket; procwarpd expects "
            "exactly one");
      }
      socket = std::move(fd);
    } else if (stored != nullptr) {
      stored->emplace_back(name, std::move(fd));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "systemd passed fd '", name,
          "', which is not a listening unix stream socket"));
    }
  }
  return socket;
}

Listener::Listener(UniqueFd listen_fd, SessionRegistry* sessions,
                   std::optional<gid_t> admin_gid, ConnectionLimits limits)
    : listen_fd_(std::move(listen_fd)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      sessions_(sessions),
      admin_gid_(admin_gid),
      limits_(limits) {
  if (!wake_fd_) abort();  // out of fds at start-up
  // accept() after poll() must not block if the client gave up meanwhile.
  int flags = fcntl(listen_fd_.get(), F_GETFL);
  if (flags >= 0) fcntl(listen_fd_.get(), F_SETFL, flags | O_NONBLOCK);
}

Listener::~Listener() { Stop(); }

void Listener::Start(grpc::Server* server) {
  thread_ = std::thread([this, server] { AcceptLoop(server); });
}

void Listener::Stop() {
  if (stopping_.exchange(true)) return;
  // Wake the loop through our own eventfd. shutdown() on the listening socket
  // would also wake it, but under socket activation that socket is systemd's
  // and is handed to the next daemon instance: it must stay listening.
  uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void Listener::AcceptLoop(grpc::Server* server) {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents != 0) return;
    int raw = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (raw < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        // Out of resources: say so and keep serving existing clients; the
        // backlog holds the new one until an fd frees up.
        LogError(absl::StrCat("accept: ", strerror(errno)));
        usleep(100 * 1000);
        continue;
      }
      LogError(absl::StrCat("accept: ", strerror(errno)));
      continue;
    }
    UniqueFd conn(raw);
    auto identity = ReadPeerIdentity(conn.get(), admin_gid_);
    if (!identity.ok()) {
      LogError(absl::StrCat("rejecting connection: ", identity.status().ToString()));
      continue;
    }
    if (absl::Status admitted =
            AdmitConnection(*sessions_, limits_, conn.get(), *identity);
        !admitted.ok()) {
      refusals_.Log(admitted);
      continue;  // closes it: the client sees the connection end
    }
    auto session = sessions_->Register(conn.get(), *std::move(identity));
    if (!session.ok()) {
      LogError(absl::StrCat("rejecting connection: ", session.status().ToString()));
      continue;
    }
    // gRPC drives the fd from its event engine, which needs it non-blocking
    // (set by accept4 above).
    grpc::AddInsecureChannelFromFd(server, conn.Release());
  }
}

absl::Status AdmitConnection(const SessionRegistry& sessions,
                             const ConnectionLimits& limits, int fd,
                             const Identity& identity) {
  return AdmitConnectionWith(sessions.SessionsOf(identity), limits, fd, identity);
}

absl::Status AdmitConnectionWith(int open, const ConnectionLimits& limits,
                                 int fd, const Identity& identity) {
  const int limit = identity.admin ? limits.per_admin : limits.per_identity;
  const std::string who =
      identity.remote()
          ? absl::StrCat("uid ", identity.uid, " (certificate '",
                         identity.subject, "' from ", identity.peer_address, ")")
          : absl::StrCat("uid ", identity.uid, " (pid ", identity.pid, ")");
  if (open >= limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "refusing a connection from ", who, ": it already has ", open,
        " connections, the limit per ",
        identity.admin ? "admin" : "user", " is ", limit));
  }
  if (!identity.admin) {
    struct rlimit nofile {};
    if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) {
      return ErrnoStatus(errno, "getrlimit(RLIMIT_NOFILE)");
    }
    if (nofile.rlim_cur != RLIM_INFINITY &&
        static_cast<rlim_t>(fd) + limits.fd_reserve >= nofile.rlim_cur) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "refusing a connection from ", who, ": fewer than ", limits.fd_reserve,
          " file descriptors are left under RLIMIT_NOFILE=", nofile.rlim_cur,
          " (accepted fd ", fd, "); the rest are kept for admins"));
    }
  }
  return absl::OkStatus();
}

void RefusalLog::Log(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  absl::Time now = absl::Now();
  if (now - last_ < absl::Seconds(1)) {
    ++not_logged_;
    return;
  }
  std::string message(why.message());
  if (not_logged_ > 0) {
    absl::StrAppend(&message, " (and ", not_logged_,
                    " more refused connections not logged)");
  }
  LogError(message);
  last_ = now;
  not_logged_ = 0;
}

}  // namespace procwarp
