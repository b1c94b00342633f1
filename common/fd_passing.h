// Passing file descriptors over unix sockets (SCM_RIGHTS): one message with
// the fds riding on it. Shared by the daemon's fd side channel (one fd per
// message), the restart keeper (a process's pidfd and stdio ends together),
// the client library and the tests that speak those protocols.
#ifndef PROCWARP_COMMON_FD_PASSING_H_
#define PROCWARP_COMMON_FD_PASSING_H_

#include <sys/types.h>

#include <cstddef>

namespace procwarp {

// Most fds one message carries.
inline constexpr size_t kMaxFdsPerMessage = 8;

// One sendmsg of `len` bytes from `data` with `num_fds` (at most
// kMaxFdsPerMessage) fds attached. Retries EINTR; never raises SIGPIPE.
ssize_t SendWithFds(int socket, const void* data, size_t len, const int* fds,
                    size_t num_fds);

// One recvmsg of up to `len` bytes into `data`; up to `max_fds` fds that came
// with it go to fds[0..*num_fds) (close-on-exec; the caller owns them), any
// more are closed. Retries EINTR; -1 with EMSGSIZE when the kernel had to
// drop passed fds.
ssize_t ReceiveWithFds(int socket, void* data, size_t len, int* fds,
                       size_t max_fds, size_t* num_fds);

// One sendmsg of `len` bytes from `data`, with `fd` attached as SCM_RIGHTS
// when fd >= 0. Retries EINTR; never raises SIGPIPE. Returns what sendmsg
// returns (bytes sent, or -1 with errno set).
ssize_t SendWithFd(int socket, const void* data, size_t len, int fd);

// One recvmsg of up to `len` bytes into `data`. An fd that came with the
// message is stored in *fd (close-on-exec; the caller owns it), else *fd is
// -1. Retries EINTR. Returns what recvmsg returns; -1 with EMSGSIZE when the
// kernel had to drop passed fds (truncated control data).
ssize_t ReceiveWithFd(int socket, void* data, size_t len, int* fd);

}  // namespace procwarp

#endif  // PROCWARP_COMMON_FD_PASSING_H_
