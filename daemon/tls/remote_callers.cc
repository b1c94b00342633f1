// See remote_callers.h.
#include "daemon/tls/remote_callers.h"

#include <grpc/grpc_security_constants.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/server/log.h"
#include "grpcpp/security/auth_context.h"

namespace procwarp {
namespace {

// The client certificate gRPC verified for the call's connection, or empty
// (not a TLS connection).
grpc::string_ref PeerCertificate(const grpc::AuthContext* auth) {
  if (auth == nullptr) return {};
  std::vector<grpc::string_ref> pems =
      auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  return pems.empty() ? grpc::string_ref() : pems.front();
}

}  // namespace

RemoteCallers::RemoteCallers(CertificateMapper mapper, ConnectionLimits limits,
                             SessionRegistry* sessions)
    : mapper_(std::move(mapper)), limits_(limits), sessions_(sessions) {}

absl::StatusOr<std::shared_ptr<const Session>> RemoteCallers::SessionOf(
    const grpc::ServerContextBase& context,
    const std::string& peer_address) const {
  // Held for the call: the certificate's bytes live in it.
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  const grpc::string_ref certificate = PeerCertificate(auth.get());
  if (certificate.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the connection from ", peer_address, " has no client certificate"));
  }
  absl::StatusOr<std::shared_ptr<const Session>> session =
      sessions_->RemoteSession(peer_address);
  if (!session.ok()) return session.status();
  if (*session == nullptr) {
    return BindConnection(peer_address,
                          std::string(certificate.data(), certificate.size()));
  }
  // The session of the connection from this address, and this call's
  // connection was verified with the same certificate: the same client
  // (only a connection from the same address and port could be confused
  // with it, and only after it ended).
  if (grpc::string_ref((*session)->certificate) != certificate) {
    return absl::UnauthenticatedError(absl::StrCat(
        "no authenticated session for peer '", peer_address, "'"));
  }
  return session;
}

absl::StatusOr<std::shared_ptr<const Session>> RemoteCallers::BindConnection(
    const std::string& peer_address, const std::string& certificate) const {
  absl::StatusOr<CertificateNames> names = NamesOfPem(certificate);
  if (!names.ok()) return absl::UnauthenticatedError(names.status().message());
  absl::StatusOr<Identity> mapped = mapper_.Map(*names);
  Identity identity;
  std::string refusal;
  if (mapped.ok()) {
    identity = *std::move(mapped);
  } else {
    // No uid's rights: uid -1 owns nothing and passes no check.
    identity.uid = static_cast<uid_t>(-1);
    identity.gid = static_cast<gid_t>(-1);
    identity.subject = names->subject;
    refusal = std::string(mapped.status().message());
  }
  identity.peer_address = peer_address;
  bool bound_now = false;
  absl::StatusOr<std::shared_ptr<const Session>> session = sessions_->Bind(
      peer_address, identity, refusal, certificate,
      [&](int open, int fd) -> absl::Status {
        bound_now = true;
        return AdmitConnectionWith(open, limits_, fd, identity);
      });
  if (!session.ok()) {
    // Over the limits: the registry closed the connection, so the client
    // sees it closed (UNAVAILABLE) as a local one would at accept.
    refusals_.Log(session.status());
    return session.status();
  }
  if (!bound_now) return session;  // another first call bound it
  if (refusal.empty()) {
    LogInfo(absl::StrCat("TLS client '", identity.subject, "' from ",
                         peer_address, " connected as uid ", identity.uid,
                         identity.admin ? " (admin)" : ""));
  } else {
    LogError(absl::StrCat("TLS connection from ", peer_address, ": ", refusal));
  }
  return session;
}

}  // namespace procwarp
