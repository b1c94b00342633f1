// Kernel TLS for remote connections (docs/remote.md, "Kernel TLS").
//
// The server context asks OpenSSL to move each session's keys into the
// kernel once the handshake is done (SSL_OP_ENABLE_KTLS, server_credentials.h).
// When the kernel took both directions, the TCP socket reads and writes
// plaintext: gRPC can be given the socket itself, and no pump thread copies
// every byte through a socketpair (tls_pump.h). When it took one direction or
// none (no tls module in the kernel, a cipher it does not know, TLS 1.3
// receiving with OpenSSL 3.0), the pump stays, and OpenSSL still uses the
// kernel for the direction it has.
//
// With both directions in the kernel, a record that is not application data
// (a close_notify alert, a TLS 1.3 KeyUpdate) makes the socket's read fail
// (EIO): gRPC then ends the connection, and the client reconnects. Session
// tickets and renegotiation are off (server_credentials.h), so no such
// record is due from either side in normal use.
#ifndef PROCWARP_DAEMON_TLS_KERNEL_TLS_H_
#define PROCWARP_DAEMON_TLS_KERNEL_TLS_H_

#include <openssl/ssl.h>

#include <string>

namespace procwarp {

struct KernelTls {
  bool send = false;     // the kernel seals what is written to the socket
  bool receive = false;  // the kernel opens what is read from it
  // Nothing of the peer's is left in OpenSSL's buffers (it would be lost if
  // the socket were handed on).
  bool drained = true;
  // The protocol and cipher, for the log ("TLSv1.3 TLS_AES_128_GCM_SHA256").
  std::string session;

  // The socket can be used as a plain one.
  bool whole() const { return send && receive && drained; }
  // Where the connection's TLS runs, for its log line.
  std::string Describe() const;
};

// What OpenSSL moved into the kernel for `ssl`, after its handshake.
KernelTls KernelTlsOf(SSL* ssl);

// For a connection whose socket was handed to gRPC with both directions in
// the kernel: returns once it ends (the peer hung up, gRPC shut it down, it
// failed) or `stop_fd` becomes readable; then shuts the socket down, so gRPC
// ends the connection too. `socket` is this thread's own duplicate.
void AwaitConnectionEnd(int socket, int stop_fd);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_KERNEL_TLS_H_
