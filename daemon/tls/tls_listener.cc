// See tls_listener.h.
#include "daemon/tls/tls_listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "daemon/server/log.h"
#include "daemon/tls/grpc_credentials.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// Probes sent to a silent peer before it is given up.
constexpr int kKeepaliveProbes = 3;

// "HOST:PORT" or "[V6]:PORT" -> a listening socket.
absl::StatusOr<UniqueFd> BindTcp(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen_tcp '", address, "' is not HOST:PORT (IPv6 as [ADDR]:PORT)"));
  }
  absl::string_view host_view(address.data(), colon);
  std::string port = address.substr(colon + 1);
  if (absl::ConsumePrefix(&host_view, "[") &&
      !absl::ConsumeSuffix(&host_view, "]")) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen_tcp '", address, "': unbalanced [ ]"));
  }
  std::string host(host_view);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen_tcp '", address, "': ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, freeaddrinfo);
  UniqueFd fd(socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return ErrnoStatus(errno, "socket(TCP)");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (found->ai_family == AF_INET6) {
    // "[::]" means IPv6 only, so "0.0.0.0" can be listed beside it.
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    return ErrnoStatus(errno, absl::StrCat("bind(", address, ")"));
  }
  if (listen(fd.get(), SOMAXCONN) != 0) {
    return ErrnoStatus(errno, absl::StrCat("listen(", address, ")"));
  }
  return fd;
}

// Bounds how long a vanished peer (a link that went down, no FIN or RST)
// keeps a connection, its thread and its handles: an idle connection is
// probed after half of `dead_peer`, and unacknowledged data (or probes)
// give up after all of it.
void SetKeepalive(int fd, absl::Duration dead_peer) {
  int one = 1;
  const int64_t ms = std::max<int64_t>(absl::ToInt64Milliseconds(dead_peer), 3000);
  int idle_s = static_cast<int>(ms / 2000);
  int interval_s = std::max(1, static_cast<int>(ms / 2000 / kKeepaliveProbes));
  unsigned user_timeout_ms = static_cast<unsigned>(ms);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &kKeepaliveProbes, sizeof(int));
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
             sizeof(user_timeout_ms));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void LogServerCertificate(const ServerCredentials& creds, const char* when) {
  const CertificateValidity& v = creds.server_certificate();
  if (v.problem.empty()) {
    LogInfo(absl::StrCat("TLS credentials ", when, ": server certificate '",
                         v.subject, "' valid until ",
                         absl::FormatTime(v.not_after, absl::UTCTimeZone())));
  } else {
    LogError(absl::StrCat("TLS credentials ", when, ": the server certificate '",
                          v.subject, "' is ", v.problem,
                          ": clients will refuse this daemon"));
  }
}

}  // namespace

TlsListener::TlsListener(TlsListenerOptions options, CertificateMapper mapper,
                         SessionRegistry* sessions)
    : options_(std::move(options)),
      sessions_(sessions),
      callers_(std::move(mapper), options_.limits, sessions),
      stop_accepting_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      inotify_fd_(inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) {}

absl::StatusOr<std::unique_ptr<TlsListener>> TlsListener::Create(
    TlsListenerOptions options, CertificateMapper mapper,
    SessionRegistry* sessions) {
  RETURN_IF_ERROR(mapper.Validate());
  ASSIGN_OR_RETURN(auto creds, ServerCredentials::Load(options.files));
  LogServerCertificate(*creds, "loaded");
  std::unique_ptr<TlsListener> listener(
      new TlsListener(std::move(options), std::move(mapper), sessions));
  if (!listener->stop_accepting_fd_ || !listener->inotify_fd_) {
    return ErrnoStatus(errno, "eventfd/inotify_init1 for the TLS listener");
  }
  listener->credentials_ = std::move(creds);
  for (const std::string& address : listener->options_.addresses) {
    ASSIGN_OR_RETURN(UniqueFd fd, BindTcp(address));
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
    listener->bound_.push_back(FormatPeerAddress(bound));
    listener->listen_fds_.push_back(std::move(fd));
  }
  // Watch the directories, not the files: editors and Kubernetes Secrets
  // replace files (rename, symlink swap) rather than write them in place.
  std::set<std::string> dirs;
  for (const std::string* file :
       {&listener->options_.files.ca_file, &listener->options_.files.cert_file,
        &listener->options_.files.key_file}) {
    std::string dir = std::filesystem::path(*file).parent_path().string();
    dirs.insert(dir.empty() ? "." : dir);
  }
  for (const std::string& dir : dirs) {
    if (inotify_add_watch(listener->inotify_fd_.get(), dir.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
                              IN_ATTRIB) < 0) {
      LogError(absl::StrCat("not watching ", dir, " for new TLS credentials (",
                            strerror(errno), "); reload them with SIGHUP"));
    }
  }
  return listener;
}

TlsListener::~TlsListener() { StopAccepting(); }

std::shared_ptr<const ServerCredentials> TlsListener::credentials() const {
  absl::MutexLock lock(&mu_);
  return credentials_;
}

void TlsListener::AddTo(grpc::ServerBuilder* builder) {
  acceptor_ = builder->experimental().AddExternalConnectionAcceptor(
      grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
      ReloadableGrpcCredentials([this] { return credentials(); }));
  // Only connections that handshake have this deadline: the unix ones are
  // handed to gRPC without a handshake.
  builder->AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.handshake_timeout)));
}

void TlsListener::Start() {
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
}

void TlsListener::Reload() {
  absl::StatusOr<std::shared_ptr<const ServerCredentials>> loaded =
      ServerCredentials::Load(options_.files);
  if (!loaded.ok()) {
    LogError(absl::StrCat("TLS credentials not reloaded, keeping the previous "
                          "ones: ", loaded.status().message()));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (credentials_ != nullptr && credentials_->SameAs(**loaded)) {
      return;  // touched, not changed
    }
    credentials_ = *loaded;
  }
  LogServerCertificate(**loaded, "reloaded");
}

void TlsListener::StopAccepting() {
  if (stopped_accepting_.exchange(true)) return;
  uint64_t one = 1;
  (void)!write(stop_accepting_fd_.get(), &one, sizeof(one));
  if (accept_thread_.joinable()) accept_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
}

void TlsListener::WatchLoop() {
  alignas(inotify_event) char events[4096];
  for (;;) {
    pollfd fds[2] = {{inotify_fd_.get(), POLLIN, 0},
                     {stop_accepting_fd_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents != 0) return;
    // Drain the batch; one reload covers every event in it.
    while (read(inotify_fd_.get(), events, sizeof(events)) > 0) {
    }
    Reload();
  }
}

void TlsListener::AcceptLoop() {
  std::vector<pollfd> fds;
  for (const UniqueFd& fd : listen_fds_) fds.push_back({fd.get(), POLLIN, 0});
  fds.push_back({stop_accepting_fd_.get(), POLLIN, 0});
  for (;;) {
    if (poll(fds.data(), fds.size(), -1) < 0) continue;  // EINTR
    if (fds.back().revents != 0) return;
    for (size_t i = 0; i + 1 < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      int raw = accept4(fds[i].fd, reinterpret_cast<sockaddr*>(&peer), &len,
                        SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (raw < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM) {
          LogError(absl::StrCat("accept (TLS): ", strerror(errno)));
          usleep(100 * 1000);
        }
        continue;
      }
      UniqueFd conn(raw);
      std::string peer_address = FormatPeerAddress(peer);
      if (TakeConnectionSlot(peer_address)) {
        HandOver(std::move(conn), fds[i].fd, peer_address);
      }
    }
  }
}

bool TlsListener::TakeConnectionSlot(const std::string& peer) {
  absl::MutexLock lock(&connections_->mu);
  if (connections_->count >= options_.max_connections) {
    refusals_.Log(absl::ResourceExhaustedError(absl::StrCat(
        "refusing a TLS connection from ", peer, ": ", connections_->count,
        " TLS connections are open, the limit (tls.max_connections) is ",
        options_.max_connections)));
    return false;
  }
  ++connections_->count;
  return true;
}

void TlsListener::HandOver(UniqueFd conn, int listen_fd,
                           const std::string& peer) {
  SetKeepalive(conn.get(), options_.dead_peer_timeout);
  // Its slot is given back when the registry sees the connection end,
  // however it ends: the handshake failed or timed out (gRPC closes it),
  // no call came within the handshake timeout (the registry closes it), the
  // client left, or its first call found it over the limits.
  absl::Status registered = sessions_->RegisterPending(
      conn.get(), peer, [open = connections_, peer](bool bound) {
        {
          absl::MutexLock lock(&open->mu);
          --open->count;
        }
        if (!bound) {
          // gRPC logs a failed handshake's reason, not who it was.
          open->ended_unbound.Log(absl::UnavailableError(absl::StrCat(
              "TLS connection from ", peer, " ended before its first call: "
              "its TLS handshake failed or timed out, or it made no call in "
              "time (tls.handshake_timeout_ms)")));
        }
      },
      absl::Now() + options_.handshake_timeout);
  if (!registered.ok()) {
    absl::MutexLock lock(&connections_->mu);
    --connections_->count;
    LogError(absl::StrCat("TLS connection from ", peer, ": ",
                          registered.message()));
    return;
  }
  grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters
      connection;
  connection.listener_fd = listen_fd;
  connection.fd = conn.Release();  // gRPC's from now on
  acceptor_->HandleNewConnection(&connection);
}

}  // namespace procwarp
