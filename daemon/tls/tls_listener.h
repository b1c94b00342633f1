// TlsListener: the daemon's accept loop for remote callers (config
// listen_tcp), mutual TLS only (docs/remote.md, "The path of a remote
// connection").
//
// The daemon accepts, gRPC does the TLS: each accepted TCP connection,
// under `max_connections` (counting those still handshaking), gets TCP
// keepalive and TCP_USER_TIMEOUT (a peer that vanished without a FIN or
// RST, e.g. a link that went down, is dropped within `dead_peer_timeout`),
// is registered pending in the session registry, and is handed to gRPC's
// external connection acceptor, which runs the TLS handshake with the
// credentials of grpc_credentials.h within `handshake_timeout`. The
// connection's first call binds it to the identity its certificate maps to
// (remote_callers.h); its end, seen by the registry, frees its
// non-persistent handles and its place under `max_connections`.
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
#include "daemon/tls/remote_callers.h"
#include "daemon/tls/server_credentials.h"
#include "daemon/util/unique_fd.h"
#include "grpcpp/server_builder.h"

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

  // Resolves the callers of the connections this listener hands to gRPC:
  // give it to the CallerResolver.
  const RemoteCallerSource* callers() const { return &callers_; }

  // Adds gRPC's side (the acceptor with the TLS credentials, the handshake
  // timeout) to the server being built. Call once, before BuildAndStart.
  void AddTo(grpc::ServerBuilder* builder);
  // Starts accepting (the server built with AddTo has started) and
  // watching the credential files.
  void Start();
  // Re-reads the credential files now; new connections use them.
  void Reload();
  // Stops accepting; established connections stay with gRPC, which ends
  // them when the server shuts down.
  void StopAccepting();

 private:
  // TLS connections open, handshaking or not, and the log of those that
  // ended without a call: shared with the registry's end callbacks, which
  // may run after the listener is gone.
  struct OpenConnections {
    absl::Mutex mu;
    int count ABSL_GUARDED_BY(mu) = 0;
    RefusalLog ended_unbound;
  };

  TlsListener(TlsListenerOptions options, CertificateMapper mapper,
              SessionRegistry* sessions);
  void AcceptLoop();
  void WatchLoop();
  // Takes a place under max_connections for a connection from `peer`, or
  // logs why not.
  bool TakeConnectionSlot(const std::string& peer);
  void HandOver(UniqueFd conn, int listen_fd, const std::string& peer);
  std::shared_ptr<const ServerCredentials> credentials() const;

  const TlsListenerOptions options_;
  SessionRegistry* sessions_;
  RemoteCallers callers_;
  std::vector<UniqueFd> listen_fds_;
  std::vector<std::string> bound_;
  UniqueFd stop_accepting_fd_;  // eventfd: wakes the accept and watch loops
  UniqueFd inotify_fd_;
  RefusalLog refusals_;
  const std::shared_ptr<OpenConnections> connections_ =
      std::make_shared<OpenConnections>();
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const ServerCredentials> credentials_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> stopped_accepting_{false};
  std::thread accept_thread_;
  std::thread watch_thread_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_TLS_LISTENER_H_
