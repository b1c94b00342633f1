// Certificate identities: which local identity a verified client
// certificate stands for (config `tls.mappings`, docs/remote.md).
//
// The certificate was verified against the daemon's CA before it gets here;
// this only reads its names (with OpenSSL's own accessors, no parsing of our
// own) and looks them up. A mapped certificate becomes the same Identity the
// unix path would build for that uid, so every table, check and limit
// applies to it unchanged.
#ifndef PROCWARP_DAEMON_TLS_CERT_IDENTITY_H_
#define PROCWARP_DAEMON_TLS_CERT_IDENTITY_H_

#include <openssl/x509.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/server/identity.h"
#include "proto/procwarp/config/v1/config.pb.h"

namespace procwarp {

// The names of a certificate that mappings can match.
struct CertificateNames {
  std::string subject;  // RFC 2253, control characters escaped
  std::vector<std::string> san_uris;
  std::vector<std::string> san_dns;
  std::string common_name;  // empty when the subject has none
};

CertificateNames NamesOf(X509* certificate);
// NamesOf the first certificate in `pem` (as gRPC gives a peer's, in the
// auth context's "x509_pem_cert"); INVALID_ARGUMENT when it holds none.
absl::StatusOr<CertificateNames> NamesOfPem(absl::string_view pem);

class CertificateMapper {
 public:
  // `admin_gid` makes members of that group admins, as for local callers.
  CertificateMapper(
      std::vector<procwarp::config::v1::CertificateMapping> mappings,
      std::optional<gid_t> admin_gid);

  // Checks every mapping names a match and an identity (INVALID_ARGUMENT
  // naming the bad one); users are not looked up here, they may be added
  // later.
  absl::Status Validate() const;

  // The identity `names` maps to, with subject set (peer_address is the
  // caller's to fill in). UNAUTHENTICATED naming the subject when nothing
  // maps it, or when its winning kind of name maps to two identities; also
  // when the mapped user does not exist (any more).
  absl::StatusOr<Identity> Map(const CertificateNames& names) const;

 private:
  // The mappings matched by the first kind of name that matches any (see
  // CertificateMapping in config.proto).
  std::vector<const procwarp::config::v1::CertificateMapping*> Winners(
      const CertificateNames& names) const;
  absl::StatusOr<Identity> Resolve(
      const procwarp::config::v1::CertificateMapping& mapping) const;

  std::vector<procwarp::config::v1::CertificateMapping> mappings_;
  std::optional<gid_t> admin_gid_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_CERT_IDENTITY_H_
