// The gRPC server credentials of the TLS listener: gRPC's own TLS, with the
// daemon's fixed policy and credentials it can replace at any time
// (docs/remote.md, "The path of a remote connection").
//
// The policy is fixed here, not configurable, so no config can weaken it: a
// client certificate is required and must chain to the CA bundle
// (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY); TLS 1.2 or
// later and ALPN "h2" (gRPC's own settings).
//
// gRPC asks for the credentials at every new connection (its certificate
// config fetcher, called before each handshake): a reload takes effect at
// the next handshake, and connections in progress keep what they were made
// with. gRPC's C++ API has no such credentials (its file-watching provider
// re-reads files on its own timer, with its own failure handling, and
// cannot be told to reload on SIGHUP), so the C credentials are wrapped in
// a grpc::ServerCredentials of our own, which a server uses only to add its
// port.
#ifndef PROCWARP_DAEMON_TLS_GRPC_CREDENTIALS_H_
#define PROCWARP_DAEMON_TLS_GRPC_CREDENTIALS_H_

#include <functional>
#include <memory>

#include "daemon/tls/server_credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace procwarp {

// Returns the credentials to serve with now (never null).
using CurrentCredentials =
    std::function<std::shared_ptr<const ServerCredentials>()>;

// gRPC server credentials that serve, at each new connection, with what
// `current` returns then. `current` must be cheap: gRPC calls it on its
// own threads before every handshake.
std::shared_ptr<grpc::ServerCredentials> ReloadableGrpcCredentials(
    CurrentCredentials current);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_GRPC_CREDENTIALS_H_
