// Why a mutual-TLS connection to a remote procwarpd fails, in words a person
// can act on (docs/remote.md). gRPC reports every handshake failure as a
// bare UNAVAILABLE; when Client::Connect gets one it replays the handshake
// here with OpenSSL and names the side that refused and the reason: the
// daemon's certificate (unknown CA, expired, issued for another name) or
// ours (the daemon does not trust its CA, it expired, none was sent), or an
// old protocol version.
#ifndef PROCWARP_CLIENT_CC_TLS_DIAGNOSIS_H_
#define PROCWARP_CLIENT_CC_TLS_DIAGNOSIS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace procwarp::internal {

// PEM contents and the files they came from (for messages).
struct TlsMaterial {
  std::string ca_file, cert_file, key_file;
  std::string ca_pem, cert_pem, key_pem;
};

// Problems visible without connecting: our certificate expired or not yet
// valid, the key does not match it, a file holds no PEM. OK otherwise.
absl::Status CheckOwnCredentials(const TlsMaterial& tls);

// Connects to host:port and runs a TLS handshake as gRPC would (same CA,
// certificate, key and ALPN), within `timeout`. Returns OK when it succeeds
// and the daemon does not reject it right after; otherwise UNAVAILABLE
// (cannot reach), or UNAUTHENTICATED saying which side refused and why.
absl::Status DiagnoseTls(const std::string& host, const std::string& port,
                         const TlsMaterial& tls, absl::Duration timeout);

}  // namespace procwarp::internal

#endif  // PROCWARP_CLIENT_CC_TLS_DIAGNOSIS_H_
