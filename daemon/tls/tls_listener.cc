// See tls_listener.h.
#include "daemon/tls/tls_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
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
#include "daemon/tls/kernel_tls.h"
#include "daemon/tls/tls_pump.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"
#include "grpcpp/server_posix.h"

namespace procwarp {
namespace {

// Probes sent to a silent peer before it is given up.
constexpr int kKeepaliveProbes = 3;

std::string FormatAddress(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
  return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
}

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

struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

}  // namespace

TlsListener::TlsListener(TlsListenerOptions options, CertificateMapper mapper,
                         SessionRegistry* sessions)
    : options_(std::move(options)),
      mapper_(std::move(mapper)),
      sessions_(sessions),
      stop_accepting_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      stop_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      inotify_fd_(inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) {}

absl::StatusOr<std::unique_ptr<TlsListener>> TlsListener::Create(
    TlsListenerOptions options, CertificateMapper mapper,
    SessionRegistry* sessions) {
  RETURN_IF_ERROR(mapper.Validate());
  ASSIGN_OR_RETURN(auto creds, ServerCredentials::Load(options.files));
  LogServerCertificate(*creds, "loaded");
  std::unique_ptr<TlsListener> listener(
      new TlsListener(std::move(options), std::move(mapper), sessions));
  if (!listener->stop_accepting_fd_ || !listener->stop_fd_ ||
      !listener->inotify_fd_) {
    return ErrnoStatus(errno, "eventfd/inotify_init1 for the TLS listener");
  }
  listener->credentials_ = std::move(creds);
  for (const std::string& address : listener->options_.addresses) {
    ASSIGN_OR_RETURN(UniqueFd fd, BindTcp(address));
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
    listener->bound_.push_back(FormatAddress(bound));
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

TlsListener::~TlsListener() { Stop(); }

std::shared_ptr<const ServerCredentials> TlsListener::credentials() const {
  absl::MutexLock lock(&mu_);
  return credentials_;
}

void TlsListener::Start(grpc::Server* server) {
  accept_thread_ = std::thread([this, server] { AcceptLoop(server); });
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
    if (credentials_ != nullptr &&
        credentials_->fingerprint() == (*loaded)->fingerprint()) {
      return;  // touched, not changed
    }
    credentials_ = *loaded;
  }
  LogServerCertificate(**loaded, "reloaded");
}

void TlsListener::StopAccepting() {
  if (stopped_accepting_.exchange(true)) return;
  // A connection thread that saw the flag unset has finished handing its
  // connection to gRPC once we hold the lock (see Serve).
  { absl::MutexLock fence(&mu_); }
  uint64_t one = 1;
  (void)!write(stop_accepting_fd_.get(), &one, sizeof(one));
  if (accept_thread_.joinable()) accept_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
}

void TlsListener::Stop() {
  StopAccepting();
  uint64_t one = 1;
  (void)!write(stop_fd_.get(), &one, sizeof(one));
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &connections_));
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

void TlsListener::AcceptLoop(grpc::Server* server) {
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
      std::string peer_address = FormatAddress(peer);
      {
        absl::MutexLock lock(&mu_);
        if (connections_ >= options_.max_connections) {
          refusals_.Log(absl::ResourceExhaustedError(absl::StrCat(
              "refusing a TLS connection from ", peer_address, ": ",
              connections_, " TLS connections are open, the limit "
              "(tls.max_connections) is ", options_.max_connections)));
          continue;
        }
        ++connections_;
      }
      std::thread([this, server, conn = std::move(conn),
                   peer_address = std::move(peer_address)]() mutable {
        Serve(server, std::move(conn), std::move(peer_address));
        absl::MutexLock lock(&mu_);
        --connections_;
      }).detach();
    }
  }
}

void TlsListener::Serve(grpc::Server* server, UniqueFd conn, std::string peer) {
  SetKeepalive(conn.get(), options_.dead_peer_timeout);
  std::shared_ptr<const ServerCredentials> creds = credentials();
  std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(creds->context()));
  if (ssl == nullptr || SSL_set_fd(ssl.get(), conn.get()) != 1) {
    LogError(absl::StrCat("TLS connection from ", peer, ": SSL_new failed"));
    return;
  }
  absl::Status handshake = AcceptTls(
      ssl.get(), absl::Now() + options_.handshake_timeout, stop_fd_.get());
  if (!handshake.ok()) {
    refusals_.Log(absl::Status(handshake.code(),
                               absl::StrCat("TLS connection from ", peer, ": ",
                                            handshake.message())));
    return;
  }
  X509* certificate = SSL_get0_peer_certificate(ssl.get());
  if (certificate == nullptr || SSL_get_verify_result(ssl.get()) != X509_V_OK) {
    return;  // cannot happen with SSL_VERIFY_FAIL_IF_NO_PEER_CERT
  }
  CertificateNames names = NamesOf(certificate);
  absl::StatusOr<Identity> mapped = mapper_.Map(names);
  Identity identity;
  std::string refusal;
  if (mapped.ok()) {
    identity = *std::move(mapped);
  } else {
    // Served, so the client hears why on its first call (an error it can
    // act on), but with no uid's rights: uid -1 owns nothing and passes no
    // check.
    identity.uid = static_cast<uid_t>(-1);
    identity.gid = static_cast<gid_t>(-1);
    identity.subject = names.subject;
    refusal = std::string(mapped.status().message());
    LogError(absl::StrCat("TLS connection from ", peer, ": ", refusal));
  }
  identity.peer_address = peer;

  // Who seals and opens the records from now on (kernel_tls.h): the kernel,
  // when OpenSSL gave it both directions, and gRPC gets the TCP socket
  // itself; else the pump, and gRPC gets the plaintext end of a socketpair.
  const KernelTls kernel_tls = KernelTlsOf(ssl.get());
  UniqueFd for_grpc;
  // Ours: the pump's end of the socketpair, or a duplicate of the socket to
  // see the connection end.
  UniqueFd ours;
  if (kernel_tls.whole()) {
    ours = UniqueFd(fcntl(conn.get(), F_DUPFD_CLOEXEC, 0));
    for_grpc = std::move(conn);  // `ssl` keeps the number, never closes it
  } else {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
                   pair) == 0) {
      ours = UniqueFd(pair[0]);
      for_grpc = UniqueFd(pair[1]);
      // Room for a whole stream chunk (1 MiB) from gRPC: with the default
      // ~200 KiB its writer met a full socket and waited for the pump
      // several times per message (docs/remote.md, "Performance").
      int bytes = 1 << 20;
      // Best effort: a smaller buffer costs only speed.
      setsockopt(for_grpc.get(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    }
  }
  if (!ours) {
    LogError(absl::StrCat("TLS connection from ", peer, ": ", strerror(errno)));
    return;
  }
  if (absl::Status admitted = AdmitConnection(*sessions_, options_.limits,
                                              for_grpc.get(), identity);
      !admitted.ok()) {
    refusals_.Log(admitted);
    return;
  }
  auto session = sessions_->Register(for_grpc.get(), identity, refusal);
  if (!session.ok()) {
    LogError(absl::StrCat("TLS connection from ", peer, ": ",
                          session.status().ToString()));
    return;
  }
  if (refusal.empty()) {
    LogInfo(absl::StrCat("TLS client '", identity.subject, "' from ", peer,
                         " connected as uid ", identity.uid,
                         identity.admin ? " (admin)" : "", "; ",
                         kernel_tls.Describe()));
  }
  {
    // Never hand gRPC a connection once StopAccepting() has returned: the
    // server may be shutting down by then.
    absl::MutexLock lock(&mu_);
    if (stopped_accepting_.load()) return;
    grpc::AddInsecureChannelFromFd(server, for_grpc.Release());
  }
  if (kernel_tls.whole()) {
    AwaitConnectionEnd(ours.get(), stop_fd_.get());
  } else {
    PumpTls(ssl.get(), ours.get(), stop_fd_.get());
  }
}

}  // namespace procwarp
