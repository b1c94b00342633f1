// See fd_passing.h.
#include "common/fd_passing.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace procwarp {

ssize_t SendWithFds(int socket, const void* data, size_t len, const int* fds,
                    size_t num_fds) {
  if (num_fds > kMaxFdsPerMessage) {
    errno = EINVAL;
    return -1;
  }
  iovec iov = {const_cast<void*>(data), len};
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (num_fds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(num_fds * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(num_fds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, num_fds * sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t SendWithFd(int socket, const void* data, size_t len, int fd) {
  return SendWithFds(socket, data, len, &fd, fd >= 0 ? 1 : 0);
}

ssize_t ReceiveWithFds(int socket, void* data, size_t len, int* fds,
                       size_t max_fds, size_t* num_fds) {
  *num_fds = 0;
  iovec iov = {data, len};
  // Room for more fds than any caller expects: a peer that sends extra ones
  // must not leave them unclosed in our table.
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (*num_fds < max_fds) {
        fds[(*num_fds)++] = received;
      } else {
        close(received);  // more than the caller expects
      }
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    // Some fds were dropped on the way in: refuse the message as a whole.
    for (size_t i = 0; i < *num_fds; ++i) close(fds[i]);
    *num_fds = 0;
    errno = EMSGSIZE;
    return -1;
  }
  return n;
}

ssize_t ReceiveWithFd(int socket, void* data, size_t len, int* fd) {
  size_t count = 0;
  ssize_t n = ReceiveWithFds(socket, data, len, fd, 1, &count);
  if (count == 0) *fd = -1;
  return n;
}

}  // namespace procwarp
