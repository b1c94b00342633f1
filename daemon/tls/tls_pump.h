// The byte-moving half of a TLS connection: the handshake with a deadline,
// then a pump between the TLS socket and the plain socket gRPC reads.
//
// Why a pump: gRPC 1.51 can only adopt an accepted fd as an insecure
// channel (grpc_server_add_channel_from_fd refuses secure credentials), and
// its own TLS listening port gives the daemon no say over accepting: no
// bound on connections, no per-identity limit, no way to see a connection
// end. So the daemon keeps its own accept loop for TCP as for the unix
// socket (docs/architecture.md), OpenSSL does the TLS, and gRPC gets the
// plaintext end of a socketpair, exactly as it gets a unix connection.
#ifndef PROCWARP_DAEMON_TLS_TLS_PUMP_H_
#define PROCWARP_DAEMON_TLS_TLS_PUMP_H_

#include <openssl/ssl.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace procwarp {

// Runs the server side of the handshake on `ssl` (whose fd is a
// non-blocking TCP socket) until it completes, fails, `deadline` passes
// (DEADLINE_EXCEEDED) or `stop_fd` becomes readable (CANCELLED). A failure
// is UNAUTHENTICATED with OpenSSL's reason (e.g. "peer did not return a
// certificate", "certificate verify failed: certificate has expired").
absl::Status AcceptTls(SSL* ssl, absl::Time deadline, int stop_fd);

// Moves bytes both ways between `ssl` (decrypting from and encrypting to its
// socket) and the non-blocking stream socket `plain_fd`, until both
// directions have ended, either side fails or resets, or `stop_fd` becomes
// readable. An orderly end on one side is passed on as an orderly end
// (close_notify / shutdown(SHUT_WR)) to the other.
void PumpTls(SSL* ssl, int plain_fd, int stop_fd);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_TLS_PUMP_H_
