// See server_credentials.h.
#include "daemon/tls/server_credentials.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "daemon/tls/cert_identity.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// OpenSSL's queued errors as text (and the queue emptied).
std::string OpenSslErrors() {
  std::string text;
  while (unsigned long error = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(error, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "unknown error" : text;
}

absl::Status Failed(const std::string& what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": ", OpenSslErrors()));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Time FromAsn1(const ASN1_TIME* when) {
  struct tm tm {};
  if (when == nullptr || ASN1_TIME_to_tm(when, &tm) != 1) {
    return absl::InfinitePast();
  }
  return absl::FromTM(tm, absl::UTCTimeZone());
}

// gRPC clients offer "h2" (and "grpc-exp"); without a selected protocol
// they refuse the connection.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_len,
               const unsigned char* in, unsigned int in_len, void*) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, kH2, sizeof(kH2), in, in_len) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // e.g. a diagnostic client without ALPN
}

}  // namespace

CertificateValidity ValidityOf(X509* certificate) {
  CertificateValidity v;
  v.subject = NamesOf(certificate).subject;
  v.not_before = FromAsn1(X509_get0_notBefore(certificate));
  v.not_after = FromAsn1(X509_get0_notAfter(certificate));
  absl::Time now = absl::Now();
  if (now < v.not_before) {
    v.problem = absl::StrCat("not valid before ",
                             absl::FormatTime(v.not_before, absl::UTCTimeZone()));
  } else if (now > v.not_after) {
    v.problem = absl::StrCat("expired on ",
                             absl::FormatTime(v.not_after, absl::UTCTimeZone()));
  }
  return v;
}

absl::StatusOr<std::shared_ptr<const ServerCredentials>> ServerCredentials::Load(
    const TlsFiles& files) {
  if (files.ca_file.empty() || files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "listen_tcp needs tls.ca_file, tls.cert_file and tls.key_file: a TLS "
        "listener always requires and verifies client certificates");
  }
  ERR_clear_error();
  // Contents first, so a reload can tell whether anything changed.
  ASSIGN_OR_RETURN(std::string ca, ReadFile(files.ca_file));
  ASSIGN_OR_RETURN(std::string cert, ReadFile(files.cert_file));
  ASSIGN_OR_RETURN(std::string key, ReadFile(files.key_file));

  std::shared_ptr<ServerCredentials> creds(new ServerCredentials());
  creds->fingerprint_ = absl::StrCat(ca.size(), ":", ca, cert.size(), ":", cert,
                                     key.size(), ":", key);
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return Failed("SSL_CTX_new");
  creds->context_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // OpenSSL's TLS 1.3 suites, AES-128-GCM first (OpenSSL puts AES-256
  // first): the cheapest to seal and open on both sides for the same
  // protection, and one the kernel can take (kernel_tls.h).
  if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
                                    "TLS_AES_256_GCM_SHA384:"
                                    "TLS_CHACHA20_POLY1305_SHA256") != 1) {
    return Failed("TLS 1.3 cipher suites");
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  // No tickets and no renegotiation also means no handshake record after
  // the handshake, which kernel TLS could not pass on (kernel_tls.h).
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_ENABLE_KTLS);
  // Not SSL_MODE_RELEASE_BUFFERS: it frees the record buffers whenever they
  // drain and allocates them again for the next record, i.e. around every
  // message of a busy connection.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);

  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert_file.c_str()) != 1) {
    return Failed(absl::StrCat("server certificate ", files.cert_file));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, files.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Failed(absl::StrCat("server key ", files.key_file));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return Failed(absl::StrCat("server key ", files.key_file,
                               " does not match certificate ", files.cert_file));
  }
  if (SSL_CTX_load_verify_locations(ctx, files.ca_file.c_str(), nullptr) != 1) {
    return Failed(absl::StrCat("CA bundle ", files.ca_file));
  }
  // Tells clients which CAs we accept (their error then names ours).
  STACK_OF(X509_NAME)* ca_names = SSL_load_client_CA_file(files.ca_file.c_str());
  if (ca_names == nullptr) {
    return Failed(absl::StrCat("CA bundle ", files.ca_file, " holds no certificate"));
  }
  SSL_CTX_set_client_CA_list(ctx, ca_names);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     nullptr);
  creds->server_ = ValidityOf(SSL_CTX_get0_certificate(ctx));
  return std::shared_ptr<const ServerCredentials>(std::move(creds));
}

ServerCredentials::~ServerCredentials() { SSL_CTX_free(context_); }

}  // namespace procwarp
