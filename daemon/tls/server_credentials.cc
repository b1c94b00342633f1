// See server_credentials.h.
#include "daemon/tls/server_credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

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

using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
using Certificate = std::unique_ptr<X509, decltype(&X509_free)>;
using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
}

// The first certificate in `pem` (a chain's leaf), or null.
Certificate FirstCertificate(const std::string& pem) {
  Bio bio = MemoryBio(pem);
  if (bio == nullptr) return Certificate(nullptr, X509_free);
  return Certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr),
                     X509_free);
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
  std::shared_ptr<ServerCredentials> creds(new ServerCredentials());
  ASSIGN_OR_RETURN(creds->ca_pem_, ReadFile(files.ca_file));
  ASSIGN_OR_RETURN(creds->cert_pem_, ReadFile(files.cert_file));
  ASSIGN_OR_RETURN(creds->key_pem_, ReadFile(files.key_file));

  // Checked from the very bytes gRPC will get, not by reading the files a
  // second time (they may change in between).
  Certificate certificate = FirstCertificate(creds->cert_pem_);
  if (certificate == nullptr) {
    return Failed(absl::StrCat("server certificate ", files.cert_file));
  }
  Key key(nullptr, EVP_PKEY_free);
  if (Bio bio = MemoryBio(creds->key_pem_); bio != nullptr) {
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  }
  if (key == nullptr) return Failed(absl::StrCat("server key ", files.key_file));
  if (X509_check_private_key(certificate.get(), key.get()) != 1) {
    return Failed(absl::StrCat("server key ", files.key_file,
                               " does not match certificate ", files.cert_file));
  }
  if (FirstCertificate(creds->ca_pem_) == nullptr) {
    return Failed(absl::StrCat("CA bundle ", files.ca_file,
                               " holds no certificate"));
  }
  creds->server_ = ValidityOf(certificate.get());
  return std::shared_ptr<const ServerCredentials>(std::move(creds));
}

bool ServerCredentials::SameAs(const ServerCredentials& other) const {
  return ca_pem_ == other.ca_pem_ && cert_pem_ == other.cert_pem_ &&
         key_pem_ == other.key_pem_;
}

}  // namespace procwarp
