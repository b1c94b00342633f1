// See kernel_tls.h.
#include "daemon/tls/kernel_tls.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace procwarp {

std::string KernelTls::Describe() const {
  if (whole()) return absl::StrCat("TLS in the kernel (", session, ")");
  std::string why;
  if (send && receive) {
    why = "OpenSSL had already read records past the handshake";
  } else if (send) {
    why = "the kernel seals what the daemon sends, but OpenSSL did not give "
          "it receiving";
  } else {
    why = "no kernel TLS for it (no tls module in the kernel, or a cipher it "
          "does not know)";
  }
  return absl::StrCat("TLS in the daemon (", session, ": ", why, ")");
}

KernelTls KernelTlsOf(SSL* ssl) {
  KernelTls k;
  k.send = BIO_get_ktls_send(SSL_get_wbio(ssl));
  k.receive = BIO_get_ktls_recv(SSL_get_rbio(ssl));
  k.drained = SSL_has_pending(ssl) == 0;
  k.session = absl::StrCat(SSL_get_version(ssl), " ",
                           SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
  return k;
}

void AwaitConnectionEnd(int socket, int stop_fd) {
  for (;;) {
    pollfd fds[2] = {{socket, POLLRDHUP, 0}, {stop_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents != 0) return;  // gRPC sees the same end by itself
    if (fds[1].revents != 0) break;
  }
  shutdown(socket, SHUT_RDWR);
}

}  // namespace procwarp
