// ServerCredentials: one immutable OpenSSL server context for the TLS
// listener, built from the configured CA bundle, certificate and key.
//
// The policy is fixed here, not configurable, so no config can weaken it:
// TLS 1.2 or later; a client certificate is required and must chain to the
// CA bundle; no session resumption (a resumed session would skip verifying
// the client against a CA bundle that may have been replaced since); ALPN
// "h2" for gRPC clients; session keys go to the kernel where it can take
// them (kernel TLS, kernel_tls.h). Reloading builds a new one; connections
// keep the one they started with (SSL objects hold a reference on their
// SSL_CTX).
#ifndef PROCWARP_DAEMON_TLS_SERVER_CREDENTIALS_H_
#define PROCWARP_DAEMON_TLS_SERVER_CREDENTIALS_H_

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace procwarp {

struct TlsFiles {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

// The validity period of a certificate, and what is wrong with it now.
struct CertificateValidity {
  std::string subject;
  absl::Time not_before;
  absl::Time not_after;
  // Empty when valid now, else "expired on ..." / "not valid before ...".
  std::string problem;
};
CertificateValidity ValidityOf(X509* certificate);

class ServerCredentials {
 public:
  // Reads the three files; FAILED_PRECONDITION naming the file and OpenSSL's
  // reason when one is unreadable, the key does not match the certificate,
  // or the CA bundle holds no certificate.
  static absl::StatusOr<std::shared_ptr<const ServerCredentials>> Load(
      const TlsFiles& files);
  ~ServerCredentials();
  ServerCredentials(const ServerCredentials&) = delete;
  ServerCredentials& operator=(const ServerCredentials&) = delete;

  SSL_CTX* context() const { return context_; }
  // The server certificate's validity (logged at start and on reload: an
  // expired server certificate makes every client fail).
  const CertificateValidity& server_certificate() const { return server_; }
  // The files' contents, to tell a real change from a touch.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  ServerCredentials() = default;
  SSL_CTX* context_ = nullptr;
  CertificateValidity server_;
  std::string fingerprint_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_SERVER_CREDENTIALS_H_
