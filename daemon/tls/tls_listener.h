// TlsListener: the daemon's accept loop for remote callers (config
// listen_tcp), mutual TLS only (docs/remote.md).
//
// For each accepted TCP connection, under `max_connections` (counting
// handshakes in progress), one thread:
//   1. completes the TLS handshake within `handshake_timeout` (a client that
//      connects and sends nothing holds one connection slot that long, and
//      nothing else): TLS 1.2+, a client certificate chaining to the CA
//      bundle is required (server_credentials.h);
//   2. maps the certificate to an Identity (cert_identity.h), or marks the
//      session so every call is refused UNAUTHENTICATED naming the subject;
//   3. applies the same per-identity connection limit and admin fd reserve
//      as the unix listener (AdmitConnection);
//   4. registers a Session on the plaintext end of a socketpair and hands
//      that end to gRPC (AddInsecureChannelFromFd, as for unix clients), so
//      callers resolve, are limited and are authorised exactly as local
//      ones;
//   5. pumps bytes between TLS and the socketpair until either side ends
//      (tls_pump.h); the registry sees the session end when it does.
// Dead peers that never close (a link that went down) are found by TCP
// keepalive and TCP_USER_TIMEOUT within `dead_peer_timeout`.
//
// Credentials are reloaded by Reload() (SIGHUP) and when a watched file's
// directory changes; a failed reload keeps the previous credentials.
#ifndef PROCWARP_DAEMON_TLS_TLS_LISTENER_H_
#define PROCWARP_DAEMON_TLS_TLS_LISTENER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/server/listener.h"
#include "daemon/server/session_registry.h"
#include "daemon/tls/cert_identity.h"
#include "daemon/tls/server_credentials.h"
#include "daemon/util/unique_fd.h"
#include "grpcpp/server.h"

namespace procwarp {

struct TlsListenerOptions {
  // HOST:PORT each ("0.0.0.0:7443", "[::1]:0").
  std::vector<std::string> addresses;
  TlsFiles files;
  int max_connections = 256;
  absl::Duration handshake_timeout = absl::Seconds(10);
  // See Tls.dead_peer_timeout_ms in config.proto.
  absl::Duration dead_peer_timeout = absl::Seconds(60);
  ConnectionLimits limits;
};

class TlsListener {
 public:
  // Loads the credentials (logging the server certificate's validity) and
  // binds every address; fails on the first that cannot be used.
  static absl::StatusOr<std::unique_ptr<TlsListener>> Create(
      TlsListenerOptions options, CertificateMapper mapper,
      SessionRegistry* sessions);
  ~TlsListener();

  // The bound addresses, with the actual port ("127.0.0.1:41234").
  const std::vector<std::string>& addresses() const { return bound_; }

  // Starts accepting into `server` (already started) and watching the
  // credential files.
  void Start(grpc::Server* server);
  // Re-reads the credential files now; new connections use them.
  void Reload();
  // Stops accepting; established connections keep being served.
  void StopAccepting();
  // Ends every connection and waits for their threads.
  void Stop();

 private:
  TlsListener(TlsListenerOptions options, CertificateMapper mapper,
              SessionRegistry* sessions);
  void AcceptLoop(grpc::Server* server);
  void WatchLoop();
  void Serve(grpc::Server* server, UniqueFd conn, std::string peer);
  std::shared_ptr<const ServerCredentials> credentials() const;

  const TlsListenerOptions options_;
  const CertificateMapper mapper_;
  SessionRegistry* sessions_;
  std::vector<UniqueFd> listen_fds_;
  std::vector<std::string> bound_;
  UniqueFd stop_accepting_fd_;  // eventfd: wakes the accept and watch loops
  UniqueFd stop_fd_;            // eventfd: ends every connection
  UniqueFd inotify_fd_;
  RefusalLog refusals_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const ServerCredentials> credentials_ ABSL_GUARDED_BY(mu_);
  int connections_ ABSL_GUARDED_BY(mu_) = 0;  // connection threads running

  std::atomic<bool> stopped_accepting_{false};
  std::thread accept_thread_;
  std::thread watch_thread_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_TLS_LISTENER_H_
