// See tls_diagnosis.h.
#include "client/cc/tls_diagnosis.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::internal {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using CtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX, SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL, SSL_free>>;

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::string FormatAsn1Time(const ASN1_TIME* when) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(when, &tm) != 1) return "?";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                          absl::FromTM(tm, absl::UTCTimeZone()),
                          absl::UTCTimeZone());
}

// Keeps SIGPIPE from this thread while it lives: OpenSSL writes with plain
// write(), and a daemon that closed the connection (at its connection limit,
// say) must give an error, not kill the client's process. A SIGPIPE raised
// meanwhile is consumed, unless one was already pending before.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~ScopedSigpipeBlock() {
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      const timespec zero = {0, 0};
      sigtimedwait(&pipe, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_;
  bool was_pending_ = false;
};

// Waits until `fd` is ready for `events` or the deadline passes.
bool WaitFor(int fd, short events, absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return false;
  pollfd pfd = {fd, events, 0};
  return poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) > 0;
}

absl::StatusOr<UniqueFd> ConnectTcp(const std::string& host,
                                    const std::string& port,
                                    absl::Time deadline) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    UniqueFd fd(socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) continue;
    int rc = connect(fd.get(), a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (!WaitFor(fd.get(), POLLOUT, deadline)) {
        last_error = "timed out";
        continue;
      }
      int error = 0;
      socklen_t len = sizeof(error);
      getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
      rc = error == 0 ? 0 : -1;
      errno = error;
    }
    if (rc == 0) return fd;
    last_error = strerror(errno);
  }
  return absl::UnavailableError(absl::StrCat(
      "cannot reach ", host, ":", port, ": ", last_error,
      " (is procwarpd running there with listen_tcp on that port?)"));
}

bool IsIpAddress(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

// The daemon's certificate failed our verification.
absl::Status ServerCertificateProblem(long verify, SSL* ssl,
                                      const std::string& host,
                                      const TlsMaterial& tls) {
  std::string detail = X509_verify_cert_error_string(verify);
  switch (verify) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      detail = absl::StrCat("it is not signed by the CA in ", tls.ca_file,
                            " (unknown CA: is that the CA of this daemon?)");
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: {
      X509* cert = SSL_get0_peer_certificate(ssl);
      detail = cert == nullptr
                   ? detail
                   : absl::StrCat(detail, " (valid from ",
                                  FormatAsn1Time(X509_get0_notBefore(cert)),
                                  " to ", FormatAsn1Time(X509_get0_notAfter(cert)),
                                  ")");
      break;
    }
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      detail = absl::StrCat("it was issued for other names than '", host,
                            "' (name mismatch: connect by a name or address "
                            "in its subjectAltName)");
      break;
    default:
      break;
  }
  return absl::UnauthenticatedError(absl::StrCat(
      "TLS to ", host, ": this client refused the daemon's certificate: ",
      detail));
}

// What the daemon's alert (in OpenSSL's error queue) says about us.
absl::Status AlertProblem(int reason, const std::string& host,
                          const TlsMaterial& tls) {
  std::string detail;
  switch (reason) {
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      detail = absl::StrCat("our certificate ", tls.cert_file,
                            " is not signed by a CA the daemon trusts "
                            "(unknown CA)");
      break;
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      detail = absl::StrCat("our certificate ", tls.cert_file,
                            " has expired or is not yet valid");
      break;
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      detail = "no client certificate was sent (give --cert and --key)";
      break;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
      detail = absl::StrCat("our certificate ", tls.cert_file,
                            " is not usable as a client certificate");
      break;
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
      detail = "it requires TLS 1.2 or later";
      break;
    default:
      detail = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, reason))
                   ? ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, reason))
                   : absl::StrCat("TLS alert (reason ", reason, ")");
  }
  return absl::UnauthenticatedError(absl::StrCat(
      "TLS to ", host, ": the daemon refused this client: ", detail));
}

// Why the daemon closed the connection without an alert, as far as our own
// side tells: gRPC's TLS (which the daemon serves with, docs/remote.md)
// refuses a client certificate by closing the connection without telling
// why. Not sending one, one out of its dates, and one whose issuer is not
// among the CAs the daemon listed in its certificate request are all it
// refuses them for; anything else is reported as `otherwise`.
absl::Status SilentRefusal(SSL* ssl, const std::string& host,
                           const TlsMaterial& tls, absl::Status otherwise) {
  auto refused = [&host](const std::string& detail) {
    return absl::UnauthenticatedError(absl::StrCat(
        "TLS to ", host, ": the daemon refused this client: ", detail));
  };
  if (tls.cert_pem.empty()) {
    return refused("no client certificate was sent (give --cert and --key)");
  }
  Bio cert_bio = MemoryBio(tls.cert_pem);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) return otherwise;
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0 ||
      X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    return refused(absl::StrCat("our certificate ", tls.cert_file,
                                " has expired or is not yet valid (valid "
                                "until ",
                                FormatAsn1Time(X509_get0_notAfter(cert.get())),
                                ")"));
  }
  const STACK_OF(X509_NAME)* accepted = SSL_get_client_CA_list(ssl);
  bool issuer_accepted = accepted == nullptr || sk_X509_NAME_num(accepted) == 0;
  for (int i = 0; !issuer_accepted && i < sk_X509_NAME_num(accepted); ++i) {
    issuer_accepted = X509_NAME_cmp(sk_X509_NAME_value(accepted, i),
                                    X509_get_issuer_name(cert.get())) == 0;
  }
  if (!issuer_accepted) {
    return refused(absl::StrCat("our certificate ", tls.cert_file,
                                " is not signed by a CA the daemon trusts "
                                "(unknown CA)"));
  }
  return otherwise;
}

// The first SSL reason in OpenSSL's error queue (0: none); empties it.
int FirstSslReason() {
  int reason = 0;
  while (unsigned long e = ERR_get_error()) {
    if (reason == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL) reason = ERR_GET_REASON(e);
  }
  return reason;
}

}  // namespace

absl::Status CheckOwnCredentials(const TlsMaterial& tls) {
  if (tls.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CA file ", tls.ca_file, " holds no PEM certificate"));
  }
  if (tls.cert_pem.empty() && tls.key_pem.empty()) return absl::OkStatus();
  Bio cert_bio = MemoryBio(tls.cert_pem);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the certificate file ", tls.cert_file, " holds no PEM certificate"));
  }
  Bio key_bio = MemoryBio(tls.key_pem);
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the key file ", tls.key_file, " holds no PEM private key"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "the key ", tls.key_file, " does not belong to the certificate ",
        tls.cert_file));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "our client certificate ", tls.cert_file, " expired on ",
        FormatAsn1Time(X509_get0_notAfter(cert.get()))));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "our client certificate ", tls.cert_file, " is not valid before ",
        FormatAsn1Time(X509_get0_notBefore(cert.get()))));
  }
  return absl::OkStatus();
}

absl::Status DiagnoseTls(const std::string& host, const std::string& port,
                         const TlsMaterial& tls, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  ScopedSigpipeBlock no_sigpipe;
  absl::StatusOr<UniqueFd> fd = ConnectTcp(host, port, deadline);
  if (!fd.ok()) return fd.status();

  ERR_clear_error();
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
  Bio ca_bio = MemoryBio(tls.ca_pem);
  while (X509* ca = PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, ca);
    X509_free(ca);
  }
  ERR_clear_error();  // the loop ends on "no start line"
  if (!tls.cert_pem.empty()) {
    Bio cert_bio = MemoryBio(tls.cert_pem);
    X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    Bio key_bio = MemoryBio(tls.key_pem);
    KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (cert != nullptr && key != nullptr) {
      SSL_CTX_use_certificate(ctx.get(), cert.get());
      SSL_CTX_use_PrivateKey(ctx.get(), key.get());
    }
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn));

  SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd->get());
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
  if (IsIpAddress(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    SSL_set_tlsext_host_name(ssl.get(), host.c_str());
  }

  for (;;) {
    ERR_clear_error();
    int rc = SSL_connect(ssl.get());
    if (rc == 1) break;
    int error = SSL_get_error(ssl.get(), rc);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      if (!WaitFor(fd->get(), error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                   deadline)) {
        return absl::UnavailableError(absl::StrCat(
            "TLS to ", host, ":", port, ": the handshake did not finish in ",
            absl::FormatDuration(timeout), " (is that port procwarpd's TLS "
            "listener?)"));
      }
      continue;
    }
    long verify = SSL_get_verify_result(ssl.get());
    int reason = FirstSslReason();
    if (verify != X509_V_OK) {
      return ServerCertificateProblem(verify, ssl.get(), host, tls);
    }
    if (reason != 0 && reason != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      return AlertProblem(reason, host, tls);
    }
    // Closed without an alert: the daemon refused our certificate, turned
    // the connection away (its TLS connection limit), or this is not a TLS
    // port.
    return SilentRefusal(
        ssl.get(), host, tls,
        absl::UnavailableError(absl::StrCat(
            "TLS to ", host, ":", port, ": the connection was closed during "
            "the handshake (the daemon's connection limit reached, or not "
            "procwarpd's TLS port?)")));
  }
  // With TLS 1.3 the daemon judges our certificate after our side of the
  // handshake is done: its verdict is an alert right after, or nothing.
  const absl::Time verdict = std::min(deadline, absl::Now() + absl::Seconds(2));
  for (;;) {
    char byte;
    ERR_clear_error();
    int rc = SSL_read(ssl.get(), &byte, 1);
    if (rc > 0) return absl::OkStatus();
    int error = SSL_get_error(ssl.get(), rc);
    if (error == SSL_ERROR_WANT_READ) {
      if (!WaitFor(fd->get(), POLLIN, verdict)) return absl::OkStatus();
      continue;
    }
    int reason = FirstSslReason();
    if (reason != 0 && reason != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      return AlertProblem(reason, host, tls);
    }
    return SilentRefusal(
        ssl.get(), host, tls,
        absl::UnavailableError(absl::StrCat(
            "TLS to ", host, ":", port, ": the daemon closed the connection "
            "right after the handshake (connection limit reached?)")));
  }
}

}  // namespace procwarp::internal
