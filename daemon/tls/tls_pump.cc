// See tls_pump.h.
#include "daemon/tls/tls_pump.h"

#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

namespace procwarp {
namespace {

// Bytes buffered towards gRPC: requests are small; four TLS records.
constexpr size_t kInboundBytes = 64 << 10;
// Bytes buffered from gRPC, and sealed records collected before one send():
// every recv, send and wake-up costs microseconds on these VMs (a syscall
// ~1 us plus an interrupt-enable hypercall), so a stream moves in pieces
// this big rather than record by record (docs/remote.md, "Performance").
constexpr size_t kOutboundBytes = 256 << 10;

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
  explicit Buffer(size_t size) : data(size) {}

  std::vector<char> data;
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

// What is known of an fd: a read or write that met EAGAIN is not tried
// again until poll reports the fd ready. Trying every step on every turn
// of the loop cost a failed read() per turn (most of the pump's syscalls).
struct Readiness {
  bool readable = true;
  bool writable = true;

  void Polled(short revents) {
    if (revents & (POLLIN | POLLHUP | POLLERR)) readable = true;
    if (revents & (POLLOUT | POLLHUP | POLLERR)) writable = true;
  }
};

// One send() of `bytes` to `fd` unless `fd` is known not to be writable;
// `*sent` is what went out. When it must wait, `*events` gains POLLOUT.
Progress SendOnce(int fd, absl::string_view bytes, Readiness* state,
                  short* events, size_t* sent) {
  *sent = 0;
  if (state->writable) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      *sent = static_cast<size_t>(n);
      return Progress::kSome;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) return Progress::kFailed;
    if (errno == EAGAIN) state->writable = false;
  }
  *events |= POLLOUT;
  return Progress::kNone;
}

// OpenSSL writes each record to its write BIO on its own: through a socket
// BIO, one write() per 16 KiB record. While the pump runs, a BIO of this
// kind collects the sealed records instead, and the pump sends them in one
// send() (SealedRecords below).
int CollectRecords(BIO* bio, const char* data, int n) {
  static_cast<std::string*>(BIO_get_data(bio))->append(data, n);
  return n;
}

long CollectorControl(BIO*, int command, long, void*) {
  return command == BIO_CTRL_FLUSH ? 1 : 0;  // nothing to push on: the pump sends
}

const BIO_METHOD* CollectorMethod() {
  static const BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "procwarp sealed records");
    BIO_meth_set_write(m, CollectRecords);
    BIO_meth_set_ctrl(m, CollectorControl);
    return m;
  }();
  return method;
}

// Records sealed and not yet sent. Installed as `ssl`'s write BIO for the
// pump's lifetime, and the socket BIO put back afterwards. Not when the
// kernel seals (kernel TLS sending, kernel_tls.h): OpenSSL then writes
// plaintext to the socket BIO, which must stay. Unsent bytes are what
// pending() says; Sent(n) drops the first n.
class SealedRecords {
 public:
  explicit SealedRecords(SSL* ssl) : ssl_(ssl), socket_bio_(SSL_get_wbio(ssl)) {
    if (BIO_get_ktls_send(socket_bio_)) return;
    BIO* collector = BIO_new(CollectorMethod());
    if (collector == nullptr) return;  // records go out one by one, as before
    BIO_set_data(collector, &bytes_);
    BIO_set_init(collector, 1);
    BIO_up_ref(socket_bio_);  // kept for Restore; SSL_set0_wbio drops one
    SSL_set0_wbio(ssl_, collector);
    installed_ = true;
  }
  ~SealedRecords() {
    if (installed_) SSL_set0_wbio(ssl_, socket_bio_);  // frees the collector
  }
  SealedRecords(const SealedRecords&) = delete;
  SealedRecords& operator=(const SealedRecords&) = delete;

  absl::string_view pending() const {
    return absl::string_view(bytes_).substr(sent_);
  }
  void Sent(size_t n) {
    sent_ += n;
    if (sent_ == bytes_.size()) {
      bytes_.clear();
      sent_ = 0;
    }
  }

 private:
  SSL* const ssl_;
  BIO* const socket_bio_;
  bool installed_ = false;
  std::string bytes_;
  size_t sent_ = 0;
};

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
  Buffer inbound(kInboundBytes);    // TLS -> plain (requests to gRPC)
  Buffer outbound(kOutboundBytes);  // plain -> TLS (gRPC's responses)
  SealedRecords sealed(ssl);        // TLS records on their way to net_fd
  bool close_notify_sealed = false;
  short net_events = 0;
  short plain_events = 0;
  Readiness net;
  Readiness plain;

  // Each step moves what it can without blocking and says what it waits for.
  auto read_tls = [&]() -> Progress {
    if (inbound.source_done || inbound.end == inbound.data.size()) {
      return Progress::kNone;
    }
    if (!net.readable) {
      net_events |= POLLIN;
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
      case SSL_ERROR_WANT_READ:
        net.readable = false;
        net_events |= POLLIN;
        return Progress::kNone;
      case SSL_ERROR_WANT_WRITE:
        net.writable = false;
        net_events |= POLLOUT;
        return Progress::kNone;
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
    size_t sent;
    Progress progress = SendOnce(
        plain_fd,
        absl::string_view(inbound.data.data() + inbound.begin,
                          inbound.end - inbound.begin),
        &plain, &plain_events, &sent);
    inbound.Consumed(sent);
    return progress;
  };
  auto read_plain = [&]() -> Progress {
    if (outbound.source_done || outbound.end == outbound.data.size()) {
      return Progress::kNone;
    }
    if (!plain.readable) {
      plain_events |= POLLIN;
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
      if (errno == EAGAIN) plain.readable = false;
      plain_events |= POLLIN;
      return Progress::kNone;
    }
    return Progress::kFailed;
  };
  // Sends what is sealed; when all of it is gone, seals more (or the end).
  auto write_tls = [&]() -> Progress {
    if (!net.writable) {
      net_events |= POLLOUT;
      return Progress::kNone;
    }
    if (!sealed.pending().empty()) {
      size_t sent;
      Progress progress =
          SendOnce(net_fd, sealed.pending(), &net, &net_events, &sent);
      sealed.Sent(sent);
      return progress;
    }
    if (outbound.empty()) {
      if (outbound.source_done && !outbound.sink_closed) {
        if (!close_notify_sealed) {
          SSL_shutdown(ssl);  // close_notify; we do not wait for the reply
          close_notify_sealed = true;
          return Progress::kSome;  // sent by the next step, then the FIN
        }
        shutdown(net_fd, SHUT_WR);
        outbound.sink_closed = true;
        return Progress::kSome;
      }
      return Progress::kNone;
    }
    // Record by record (SSL_MODE_ENABLE_PARTIAL_WRITE), as much as fits.
    Progress progress = Progress::kNone;
    while (!outbound.empty() && sealed.pending().size() < kOutboundBytes) {
      ERR_clear_error();
      int n = SSL_write(ssl, outbound.data.data() + outbound.begin,
                        static_cast<int>(outbound.end - outbound.begin));
      if (n > 0) {
        outbound.Consumed(n);
        progress = Progress::kSome;
        continue;
      }
      switch (SSL_get_error(ssl, n)) {
        case SSL_ERROR_WANT_WRITE:  // only when the kernel seals (no collector)
          net.writable = false;
          net_events |= POLLOUT;
          return progress;
        case SSL_ERROR_WANT_READ:
          net.readable = false;
          net_events |= POLLIN;
          return progress;
        default: return Progress::kFailed;
      }
    }
    return progress;
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
      if (net_gone) net = Readiness();
      if (plain_gone) plain = Readiness();
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
    net.Polled(fds[0].revents);
    plain.Polled(fds[1].revents);
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
