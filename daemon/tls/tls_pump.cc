// See tls_pump.h.
#include "daemon/tls/tls_pump.h"

#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace procwarp {
namespace {

// Bytes buffered per direction: four TLS records, and about what gRPC
// writes at once.
constexpr size_t kBufferBytes = 64 << 10;

std::string HandshakeError(SSL* ssl, int result) {
  int error = SSL_get_error(ssl, result);
  std::string reasons;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    if (!reasons.empty()) reasons += "; ";
    reasons += reason != nullptr ? reason : absl::StrCat("error ", e);
  }
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    absl::StrAppend(&reasons, reasons.empty() ? "" : ": ", "client certificate: ",
                    X509_verify_cert_error_string(verify));
  }
  if (error == SSL_ERROR_SYSCALL && reasons.empty()) {
    return errno != 0 ? strerror(errno) : "the client closed the connection";
  }
  return reasons.empty() ? absl::StrCat("SSL error ", error) : reasons;
}

// One direction's bytes in flight.
struct Buffer {
  std::vector<char> data = std::vector<char>(kBufferBytes);
  size_t begin = 0;
  size_t end = 0;
  bool source_done = false;  // nothing more will come in
  bool sink_closed = false;  // the end was passed on

  bool empty() const { return begin == end; }
  void Consumed(size_t n) {
    begin += n;
    if (begin == end) begin = end = 0;
  }
};

enum class Progress { kNone, kSome, kFailed };

}  // namespace

absl::Status AcceptTls(SSL* ssl, absl::Time deadline, int stop_fd) {
  const int fd = SSL_get_fd(ssl);
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int rc = SSL_accept(ssl);
    if (rc == 1) return absl::OkStatus();
    int error = SSL_get_error(ssl, rc);
    short want;
    if (error == SSL_ERROR_WANT_READ) {
      want = POLLIN;
    } else if (error == SSL_ERROR_WANT_WRITE) {
      want = POLLOUT;
    } else {
      return absl::UnauthenticatedError(
          absl::StrCat("TLS handshake failed: ", HandshakeError(ssl, rc)));
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          "the client did not complete the TLS handshake in time");
    }
    pollfd fds[2] = {{fd, want, 0}, {stop_fd, POLLIN, 0}};
    int timeout_ms = static_cast<int>(
        std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
    if (poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
    }
    if (fds[1].revents != 0) return absl::CancelledError("the daemon is stopping");
  }
}

void PumpTls(SSL* ssl, int plain_fd, int stop_fd) {
  const int net_fd = SSL_get_fd(ssl);
  Buffer inbound;   // TLS -> plain (requests to gRPC)
  Buffer outbound;  // plain -> TLS (gRPC's responses)
  short net_events = 0;
  short plain_events = 0;

  // Each step moves what it can without blocking and says what it waits for.
  auto read_tls = [&]() -> Progress {
    if (inbound.source_done || inbound.end == inbound.data.size()) {
      return Progress::kNone;
    }
    ERR_clear_error();
    int n = SSL_read(ssl, inbound.data.data() + inbound.end,
                     static_cast<int>(inbound.data.size() - inbound.end));
    if (n > 0) {
      inbound.end += n;
      return Progress::kSome;
    }
    switch (SSL_get_error(ssl, n)) {
      case SSL_ERROR_WANT_READ: net_events |= POLLIN; return Progress::kNone;
      case SSL_ERROR_WANT_WRITE: net_events |= POLLOUT; return Progress::kNone;
      case SSL_ERROR_ZERO_RETURN: inbound.source_done = true; return Progress::kSome;
      default: return Progress::kFailed;  // reset, truncation, bad record
    }
  };
  auto write_plain = [&]() -> Progress {
    if (inbound.empty()) {
      if (inbound.source_done && !inbound.sink_closed) {
        shutdown(plain_fd, SHUT_WR);
        inbound.sink_closed = true;
        return Progress::kSome;
      }
      return Progress::kNone;
    }
    ssize_t n = send(plain_fd, inbound.data.data() + inbound.begin,
                     inbound.end - inbound.begin, MSG_NOSIGNAL);
    if (n > 0) {
      inbound.Consumed(n);
      return Progress::kSome;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      plain_events |= POLLOUT;
      return Progress::kNone;
    }
    return Progress::kFailed;
  };
  auto read_plain = [&]() -> Progress {
    if (outbound.source_done || outbound.end == outbound.data.size()) {
      return Progress::kNone;
    }
    ssize_t n = recv(plain_fd, outbound.data.data() + outbound.end,
                     outbound.data.size() - outbound.end, 0);
    if (n > 0) {
      outbound.end += n;
      return Progress::kSome;
    }
    if (n == 0) {
      outbound.source_done = true;
      return Progress::kSome;
    }
    if (errno == EAGAIN || errno == EINTR) {
      plain_events |= POLLIN;
      return Progress::kNone;
    }
    return Progress::kFailed;
  };
  auto write_tls = [&]() -> Progress {
    if (outbound.empty()) {
      if (outbound.source_done && !outbound.sink_closed) {
        SSL_shutdown(ssl);  // close_notify; we do not wait for the reply
        shutdown(net_fd, SHUT_WR);
        outbound.sink_closed = true;
        return Progress::kSome;
      }
      return Progress::kNone;
    }
    ERR_clear_error();
    int n = SSL_write(ssl, outbound.data.data() + outbound.begin,
                      static_cast<int>(outbound.end - outbound.begin));
    if (n > 0) {
      outbound.Consumed(n);
      return Progress::kSome;
    }
    switch (SSL_get_error(ssl, n)) {
      case SSL_ERROR_WANT_WRITE: net_events |= POLLOUT; return Progress::kNone;
      case SSL_ERROR_WANT_READ: net_events |= POLLIN; return Progress::kNone;
      default: return Progress::kFailed;
    }
  };

  // A side that hung up while we were not waiting on it (its buffer
  // full) is left out of poll, which would otherwise report it at once
  // forever; the next read or write on it sees the end.
  bool net_gone = false;
  bool plain_gone = false;
  for (;;) {
    bool moved;
    do {
      net_events = plain_events = 0;
      Progress steps[] = {read_tls(), write_plain(), read_plain(), write_tls()};
      moved = false;
      for (Progress p : steps) {
        if (p == Progress::kFailed) return;
        if (p == Progress::kSome) moved = true;
      }
    } while (moved);
    if (inbound.sink_closed && outbound.sink_closed) return;
    if ((net_gone && net_events != 0) || (plain_gone && plain_events != 0)) {
      continue;  // try it: it fails or ends now
    }
    if (net_gone && plain_gone) return;
    pollfd fds[3] = {{net_gone ? -1 : net_fd, net_events, 0},
                     {plain_gone ? -1 : plain_fd, plain_events, 0},
                     {stop_fd, POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[2].revents != 0) return;
    if ((fds[0].revents | fds[1].revents) & POLLERR) return;
    if ((fds[0].revents & POLLHUP) && !(fds[0].revents & net_events)) {
      net_gone = true;
    }
    if ((fds[1].revents & POLLHUP) && !(fds[1].revents & plain_events)) {
      plain_gone = true;
    }
  }
}

}  // namespace procwarp
