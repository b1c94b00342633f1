// ServerCredentials: the TLS listener's CA bundle, certificate chain and key
// as read from the configured files and checked, for gRPC to serve with
// (grpc_credentials.h).
//
// Checked here, before gRPC ever sees them, so that a reload of a
// half-written file, a key that does not match its certificate or an empty
// CA bundle is refused with a clear reason and the previous credentials
// stay. Each reload makes a new immutable object; gRPC takes the new one
// for the connections that start after it (docs/remote.md, "Reloading
// certificates").
#ifndef PROCWARP_DAEMON_TLS_SERVER_CREDENTIALS_H_
#define PROCWARP_DAEMON_TLS_SERVER_CREDENTIALS_H_

#include <openssl/x509.h>

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
  // reason when one is unreadable or holds no PEM of its kind, the key does
  // not match the certificate, or the CA bundle holds no certificate.
  static absl::StatusOr<std::shared_ptr<const ServerCredentials>> Load(
      const TlsFiles& files);

  // The files' contents (PEM), exactly as checked.
  const std::string& ca_pem() const { return ca_pem_; }
  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& key_pem() const { return key_pem_; }
  // The server certificate's validity (logged at start and on reload: an
  // expired server certificate makes every client fail).
  const CertificateValidity& server_certificate() const { return server_; }
  // True when `other` holds the same three files' contents (a touch, not a
  // change).
  bool SameAs(const ServerCredentials& other) const;

 private:
  ServerCredentials() = default;
  std::string ca_pem_;
  std::string cert_pem_;
  std::string key_pem_;
  CertificateValidity server_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_SERVER_CREDENTIALS_H_
