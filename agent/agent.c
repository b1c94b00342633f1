/*
 * procwarp-agent: the syscall server procwarpd runs as an "agent thread".
 *
 * It reads fixed-size requests from a unix socket, runs them (a raw syscall,
 * an in-band memory read or write, an fd transfer, a clone of itself, exit)
 * and answers each in order; agent/protocol.h is the contract. It is freestanding C with its own
 * entry point: no libc, so no TLS, no rseq registration, no atexit, no
 * malloc; a static PIE with no relocations, so it runs wherever it is loaded.
 * That keeps its footprint to its own image, its stack and the kernel state
 * the daemon asks for, which the snapshot restorer relies on.
 *
 * Performance: pipelined batches are the point. Requests are read with a
 * buffered reader (one recvmsg may bring hundreds of requests), responses are
 * buffered and written together when the agent runs out of input, and bulk
 * memory moves go straight between the socket and the target memory.
 */
#include <asm/unistd.h>
#include <linux/errno.h>

#include "agent/arch_x86_64.h"
#include "agent/protocol.h"

/* ------------------------------------------------------------------------ */
/* Freestanding support: the compiler may call these for struct copies. */

void *memcpy(void *dst, const void *src, size_t n) {
  pw_copy_bytes(dst, src, n);
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  if ((uintptr_t)dst - (uintptr_t)src >= n) {
    pw_copy_bytes(dst, src, n); /* no overlap that a forward copy breaks */
  } else {
    pw_copy_bytes_backward(dst, src, n);
  }
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  pw_fill_bytes(dst, c, n);
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const unsigned char *x = a, *y = b;
  for (size_t i = 0; i < n; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Kernel ABI bits that are the same on every 64-bit Linux and that the UAPI
 * headers do not export in a libc-free form. */

#define PW_SOL_SOCKET 1
#define PW_SCM_RIGHTS 1
#define PW_MSG_NOSIGNAL 0x4000
#define PW_MSG_CMSG_CLOEXEC 0x40000000
#define PW_POLLIN 0x1
#define PW_POLLOUT 0x4
#define PW_F_SETFD 2
#define PW_FD_CLOEXEC 1
#define PW_O_CLOEXEC 02000000
#define PW_PAGE 4096ul /* probe stride; any real page size is a multiple */

struct pw_iovec {
  void *base;
  size_t len;
};

struct pw_msghdr {
  void *name;
  int namelen;
  struct pw_iovec *iov;
  size_t iovlen;
  void *control;
  size_t controllen;
  unsigned flags;
};

struct pw_cmsghdr {
  size_t len;
  int level;
  int type;
  /* data follows, aligned to 8 */
};

struct pw_pollfd {
  int fd;
  short events;
  short revents;
};

#define PW_CMSG_ALIGN(n) (((n) + 7ul) & ~7ul)
#define PW_CMSG_HDR_SIZE PW_CMSG_ALIGN(sizeof(struct pw_cmsghdr))
/* Most fds one sendmsg may pass us that we keep; the kernel closes extras. */
#define PW_MAX_FDS_PER_MSG 16

/* ------------------------------------------------------------------------ */
/* State. Everything lives in .bss: no allocation, nothing to free. */

#define PW_IN_CAP (64 * 1024)
#define PW_OUT_CAP (64 * 1024)
/* READ_MEM replies up to this size are copied into the response buffer so a
 * batch of small reads still goes out in one write; bigger ones are written
 * straight from the source memory. */
#define PW_INLINE_READ_MAX 4096
/* WRITE_MEM data beyond what is buffered is received straight into the
 * destination when at least this much remains, skipping a copy. */
#define PW_DIRECT_RECV_MIN (PW_IN_CAP / 2)

static int g_sock;

static unsigned char g_in[PW_IN_CAP] __attribute__((aligned(64)));
static size_t g_in_start; /* first unconsumed byte */
static size_t g_in_end;   /* one past the last received byte */

static unsigned char g_out[PW_OUT_CAP] __attribute__((aligned(64)));
static size_t g_out_len;

/* fds received via SCM_RIGHTS and not yet claimed by RECV_FD (a ring). */
static int g_fds[PW_AGENT_MAX_PENDING_FDS];
static unsigned g_fd_head;
static unsigned g_fd_count;

/* ------------------------------------------------------------------------ */
/* Small helpers. */

__attribute__((noreturn)) static void pw_exit(int code) {
  for (;;) PW_SYSCALL1(__NR_exit_group, code);
}

static void pw_close(int fd) {
  /* Never retried on EINTR: Linux releases the fd number even then. */
  PW_SYSCALL1(__NR_close, fd);
}

/* Blocks until the socket is ready for `events`. Only needed if someone made
 * the socket non-blocking behind our back; blocking sockets never get here. */
static void wait_socket(short events) {
  struct pw_pollfd p = {.fd = g_sock, .events = events, .revents = 0};
  long r;
  do {
    r = PW_SYSCALL5(__NR_ppoll, &p, 1, 0, 0, PW_KERNEL_SIGSET_SIZE);
  } while (r == -EINTR);
  if (r < 0) pw_exit(PW_AGENT_EXIT_IO);
}

/* ------------------------------------------------------------------------ */
/* Output. */

/* Writes all of iov[0..n) to the socket, attaching `control` (if any) to the
 * first sendmsg. Exits when the daemon is gone or the socket is broken. */
static void send_all(struct pw_iovec *iov, size_t n, void *control,
                     size_t controllen) {
  while (n > 0 && iov[0].len == 0) {
    ++iov;
    --n;
  }
  while (n > 0) {
    struct pw_msghdr msg = {
        .iov = iov, .iovlen = n, .control = control, .controllen = controllen};
    long r = PW_SYSCALL3(__NR_sendmsg, g_sock, &msg, PW_MSG_NOSIGNAL);
    if (r == -EINTR) continue;
    if (r == -EAGAIN) {
      wait_socket(PW_POLLOUT);
      continue;
    }
    if (r == -EPIPE || r == -ECONNRESET) pw_exit(PW_AGENT_EXIT_EOF);
    if (r == -EFAULT) pw_exit(PW_AGENT_EXIT_FAULT);
    if (r < 0) pw_exit(PW_AGENT_EXIT_IO);
    control = 0; /* the kernel took the fds with the first byte */
    controllen = 0;
    size_t done = (size_t)r;
    while (n > 0 && done >= iov[0].len) {
      done -= iov[0].len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov[0].base = (char *)iov[0].base + done;
      iov[0].len -= done;
    }
  }
}

static void flush_out(void) {
  struct pw_iovec iov = {.base = g_out, .len = g_out_len};
  send_all(&iov, 1, 0, 0);
  g_out_len = 0;
}

static void append_out(const void *data, size_t len) {
  if (PW_OUT_CAP - g_out_len < len) flush_out();
  memcpy(g_out + g_out_len, data, len);
  g_out_len += len;
}

static void reply(const struct pw_agent_request *req, int64_t result,
                  uint64_t payload_len) {
  struct pw_agent_response resp = {.result = result,
                                   .tag = req->tag,
                                   .op = req->op,
                                   .reserved = 0,
                                   .payload_len = payload_len};
  append_out(&resp, sizeof(resp));
}

/* ------------------------------------------------------------------------ */
/* Input. */

static void queue_fd(int fd) {
  if (g_fd_count == PW_AGENT_MAX_PENDING_FDS) {
    pw_close(fd); /* nobody asked for it; do not let fds pile up */
    return;
  }
  g_fds[(g_fd_head + g_fd_count) % PW_AGENT_MAX_PENDING_FDS] = fd;
  ++g_fd_count;
}

static void queue_passed_fds(const struct pw_msghdr *msg) {
  const unsigned char *p = msg->control;
  size_t left = msg->controllen; /* set by the kernel to what it wrote */
  while (left >= PW_CMSG_HDR_SIZE) {
    const struct pw_cmsghdr *h = (const struct pw_cmsghdr *)p;
    if (h->len < PW_CMSG_HDR_SIZE || h->len > left) break;
    if (h->level == PW_SOL_SOCKET && h->type == PW_SCM_RIGHTS) {
      size_t nfds = (h->len - PW_CMSG_HDR_SIZE) / sizeof(int);
      const unsigned char *data = p + PW_CMSG_HDR_SIZE;
      for (size_t i = 0; i < nfds; ++i) {
        int fd;
        memcpy(&fd, data + i * sizeof(int), sizeof(int));
        queue_fd(fd);
      }
    }
    size_t step = PW_CMSG_ALIGN(h->len);
    if (step >= left) break;
    p += step;
    left -= step;
  }
}

/* One recvmsg into buf, always with room for passed fds (a plain read would
 * make the kernel close them). Returns bytes (> 0), 0 at EOF, or -EAGAIN when
 * someone made the socket non-blocking and nothing is there. Other errors
 * exit. */
static long recv_once(void *buf, size_t len) {
  union {
    struct pw_cmsghdr align;
    unsigned char bytes[PW_CMSG_HDR_SIZE + PW_MAX_FDS_PER_MSG * sizeof(int)];
  } control;
  for (;;) {
    struct pw_iovec iov = {.base = buf, .len = len};
    struct pw_msghdr msg = {.iov = &iov,
                            .iovlen = 1,
                            .control = &control,
                            .controllen = sizeof(control)};
    long r =
        PW_SYSCALL3(__NR_recvmsg, g_sock, &msg, PW_MSG_CMSG_CLOEXEC);
    if (r == -EINTR) continue;
    if (r == -EAGAIN) return r;
    if (r == -ECONNRESET) return 0; /* the daemon is gone: same as EOF */
    if (r == -EFAULT) pw_exit(PW_AGENT_EXIT_FAULT);
    if (r < 0) pw_exit(PW_AGENT_EXIT_IO);
    queue_passed_fds(&msg);
    return r;
  }
}

/* Receives at least one byte into buf. The answers buffered so far go out
 * first, in one write, because the daemon may be waiting for them. Answers
 * still share writes where it matters: the daemon sends a batch in one go, so
 * all of it is read, run and answered before the agent reads again. (Trying a
 * non-blocking read first would cost a lone request one more syscall.)
 * Returns 0 at EOF. */
static long recv_some(void *buf, size_t len) {
  if (g_out_len > 0) flush_out();
  for (;;) {
    long r = recv_once(buf, len);
    if (r != -EAGAIN) return r;
    wait_socket(PW_POLLIN);
  }
}

/* The stream ended. At a request boundary that is the normal way to stop. */
__attribute__((noreturn)) static void end_of_stream(int mid_request) {
  flush_out(); /* the daemon may only have shut down its writing side */
  pw_exit(mid_request ? PW_AGENT_EXIT_TRUNCATED : PW_AGENT_EXIT_EOF);
}

static size_t in_avail(void) { return g_in_end - g_in_start; }

/* Makes at least `need` (<= PW_IN_CAP) bytes available in g_in. EOF first is
 * a clean end only at a request boundary with nothing buffered. */
static void in_fill(size_t need, int mid_request) {
  while (in_avail() < need) {
    if (g_in_start > 0 && PW_IN_CAP - g_in_start < need) {
      memmove(g_in, g_in + g_in_start, in_avail());
      g_in_end -= g_in_start;
      g_in_start = 0;
    }
    if (g_in_start == g_in_end) g_in_start = g_in_end = 0;
    long r = recv_some(g_in + g_in_end, PW_IN_CAP - g_in_end);
    if (r == 0) end_of_stream(mid_request || in_avail() > 0);
    g_in_end += (size_t)r;
  }
}

/* Moves the next n data bytes of the stream to dst (or drops them when dst is
 * null). dst must have been probed writable. */
static void in_take(unsigned char *dst, uint64_t n) {
  while (n > 0) {
    if (in_avail() == 0) {
      g_in_start = g_in_end = 0;
      if (dst != 0 && n >= PW_DIRECT_RECV_MIN) {
        long r = recv_some(dst, n);
        if (r == 0) end_of_stream(1);
        dst += r;
        n -= (uint64_t)r;
        continue;
      }
      in_fill(1, 1);
    }
    size_t chunk = in_avail();
    if (chunk > n) chunk = (size_t)n;
    if (dst != 0) {
      memcpy(dst, g_in + g_in_start, chunk);
      dst += chunk;
    }
    g_in_start += chunk;
    n -= chunk;
  }
}

/* ------------------------------------------------------------------------ */
/* Memory access checks. */

/* Returns how many bytes from addr on can be touched (read, or written when
 * `write`), page by page: len when all of them can, else the distance to the
 * first page that faults. */
static uint64_t accessible_prefix(uintptr_t addr, uint64_t len, int write) {
  if (len == 0) return 0;
  uintptr_t end = addr + len;
  if (end < addr) end = UINTPTR_MAX; /* wraps: only the part below 2^64 */
  uintptr_t p = addr;
  while (p < end) {
    int r = write ? pw_probe_write(p) : pw_probe_read(p);
    if (r != 0) return p - addr;
    uintptr_t next = (p | (PW_PAGE - 1)) + 1;
    if (next == 0) break; /* last page of the address space */
    p = next;
  }
  return end - addr;
}

/* SIGSEGV/SIGBUS handler: a fault at a probe resumes at the probe's error
 * return; any other fault is a real crash, so the default action is put back
 * and the faulting instruction re-runs into it (the right signal, a core). */
static void on_fault(int sig, void *info, void *ucontext) {
  (void)info;
  uintptr_t *pc = pw_ucontext_pc(ucontext);
  if (*pc == (uintptr_t)pw_probe_read_insn ||
      *pc == (uintptr_t)pw_probe_write_insn) {
    *pc = (uintptr_t)pw_probe_fixup;
    return;
  }
  struct pw_kernel_sigaction dfl = {.handler = PW_SIG_DFL};
  PW_SYSCALL4(__NR_rt_sigaction, sig, &dfl, 0, PW_KERNEL_SIGSET_SIZE);
}

static int install_fault_handlers(void) {
  /* Built at run time on purpose: a static initialiser holding function
   * addresses would need a relocation, and nothing here applies those. */
  struct pw_kernel_sigaction act = {
      .handler = (uintptr_t)on_fault,
      .flags = PW_SA_SIGINFO | PW_SA_RESTORER,
      .restorer = (uintptr_t)pw_sigreturn_trampoline,
      .mask = 0,
  };
  if (PW_SYSCALL4(__NR_rt_sigaction, PW_SIGSEGV, &act, 0,
                  PW_KERNEL_SIGSET_SIZE) != 0) {
    return -1;
  }
  if (PW_SYSCALL4(__NR_rt_sigaction, PW_SIGBUS, &act, 0,
                  PW_KERNEL_SIGSET_SIZE) != 0) {
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Ops. */

static void do_read_mem(const struct pw_agent_request *req) {
  uintptr_t addr = req->args[0];
  uint64_t len = req->args[1];
  uint64_t n = accessible_prefix(addr, len, 0);
  if (len > 0 && n == 0) {
    reply(req, -EFAULT, 0);
    return;
  }
  reply(req, (int64_t)n, n);
  if (n == 0) return;
  if (n <= PW_INLINE_READ_MAX) {
    append_out((const void *)addr, (size_t)n);
    return;
  }
  /* Large: buffered responses and the data in one sendmsg, no copy. */
  struct pw_iovec iov[2] = {{.base = g_out, .len = g_out_len},
                            {.base = (void *)addr, .len = (size_t)n}};
  send_all(iov, 2, 0, 0);
  g_out_len = 0;
}

static void do_write_mem(const struct pw_agent_request *req) {
  uintptr_t addr = req->args[0];
  uint64_t len = req->args[1];
  uint64_t n = accessible_prefix(addr, len, 1);
  in_take((unsigned char *)addr, n);
  in_take(0, len - n);
  reply(req, (len > 0 && n == 0) ? -EFAULT : (int64_t)n, 0);
}

/* Writes the response (req's tag and op, `result`) by a sendmsg of its own
 * that carries `fd` as SCM_RIGHTS. Returns 0, or the -errno of a sendmsg
 * that sent nothing (then nothing was written and the caller replies). */
static long reply_with_fd(const struct pw_agent_request *req, int64_t result,
                          int fd) {
  /* The fd rides on a sendmsg of its own response alone, so the daemon can
   * tell which response it belongs to: the one whose first byte comes with
   * it. Earlier responses must therefore go out first. */
  flush_out();
  struct pw_agent_response resp = {
      .result = result, .tag = req->tag, .op = req->op, .payload_len = 0};
  union {
    struct pw_cmsghdr align;
    unsigned char bytes[PW_CMSG_HDR_SIZE + PW_CMSG_ALIGN(sizeof(int))];
  } control;
  memset(&control, 0, sizeof(control));
  control.align.len = PW_CMSG_HDR_SIZE + sizeof(int);
  control.align.level = PW_SOL_SOCKET;
  control.align.type = PW_SCM_RIGHTS;
  memcpy(control.bytes + PW_CMSG_HDR_SIZE, &fd, sizeof(fd));

  struct pw_iovec iov = {.base = &resp, .len = sizeof(resp)};
  struct pw_msghdr msg = {.iov = &iov,
                          .iovlen = 1,
                          .control = &control,
                          .controllen = sizeof(control)};
  long r;
  for (;;) {
    r = PW_SYSCALL3(__NR_sendmsg, g_sock, &msg, PW_MSG_NOSIGNAL);
    if (r == -EINTR) continue;
    if (r == -EAGAIN) {
      wait_socket(PW_POLLOUT);
      continue;
    }
    break;
  }
  if (r == -EPIPE || r == -ECONNRESET) pw_exit(PW_AGENT_EXIT_EOF);
  /* Nothing was sent; the error is about the fd (EBADF, ETOOMANYREFS...).
   * If it was really about the socket, the plain reply fails too. */
  if (r < 0) return r;
  if ((size_t)r < sizeof(resp)) {
    struct pw_iovec rest = {.base = (char *)&resp + r,
                            .len = sizeof(resp) - (size_t)r};
    send_all(&rest, 1, 0, 0);
  }
  return 0;
}

static void do_send_fd(const struct pw_agent_request *req) {
  int64_t fd = (int64_t)req->args[0];
  if (fd < 0 || fd > 0x7fffffff) {
    reply(req, -EBADF, 0);
    return;
  }
  long r = reply_with_fd(req, fd, (int)fd);
  if (r < 0) reply(req, r, 0);
}

/* Greets the daemon on g_sock: the first thing an agent (or a cloned child
 * agent) writes. */
static void send_hello(void) {
  struct pw_agent_hello hello = {
      .magic = PW_AGENT_MAGIC,
      .version = PW_AGENT_PROTOCOL_VERSION,
      .hello_size = sizeof(struct pw_agent_hello),
      .request_size = sizeof(struct pw_agent_request),
      .response_size = sizeof(struct pw_agent_response),
      .pid = (int32_t)PW_SYSCALL0(__NR_getpid),
      .socket_fd = g_sock,
  };
  append_out(&hello, sizeof(hello));
  flush_out();
}

#define PW_CLONE_FILES 0x400ul
#define PW_CLONE_PIDFD 0x1000ul
#define PW_SIGCHLD 17
#define PW_SIGKILL 9
#define PW_PR_SET_PDEATHSIG 1
#define PW_F_GETFD 1

static void do_clone(const struct pw_agent_request *req) {
  uint64_t flags = req->args[0];
  int64_t child_sock = (int64_t)req->args[1];
  if ((flags & ~(uint64_t)PW_CLONE_ALLOWED_FLAGS) != 0) {
    reply(req, -EINVAL, 0);
    return;
  }
  if (child_sock < 0 || child_sock > 0x7fffffff) {
    reply(req, -EBADF, 0);
    return;
  }
  if (child_sock == g_sock) {
    reply(req, -EBUSY, 0);
    return;
  }
  long valid = PW_SYSCALL2(__NR_fcntl, child_sock, PW_F_GETFD);
  if (valid < 0) {
    reply(req, valid, 0);
    return;
  }
  /* The child starts with a copy of our buffers: send what is pending so it
   * cannot send our responses again. */
  flush_out();
  int pidfd = -1;
  /* x86-64 clone(flags, stack, parent_tid, child_tid, tls): CLONE_PIDFD
   * stores the pidfd through parent_tid. No CLONE_VM and a null stack: the
   * child runs on its own copy of this stack, returning 0 right here. */
  long pid = PW_SYSCALL5(__NR_clone, flags | PW_CLONE_PIDFD | PW_SIGCHLD, 0,
                         &pidfd, 0, 0);
  if (pid < 0) {
    reply(req, pid, 0);
    return;
  }
  int shared_files = (flags & PW_CLONE_FILES) != 0;
  if (pid == 0) {
    /* The child: forget the parent's stream, serve on our own socket. */
    int parent_sock = g_sock;
    g_sock = (int)child_sock;
    g_in_start = g_in_end = 0;
    g_out_len = 0;
    if (!shared_files) {
      pw_close(parent_sock);
      pw_close(pidfd);
      for (unsigned i = 0; i < g_fd_count; ++i) {
        pw_close(g_fds[(g_fd_head + i) % PW_AGENT_MAX_PENDING_FDS]);
      }
    }
    g_fd_head = g_fd_count = 0;
    PW_SYSCALL2(__NR_prctl, PW_PR_SET_PDEATHSIG, PW_SIGKILL);
    send_hello();
    return; /* back to the request loop, now on the child's socket */
  }
  if (!shared_files) pw_close((int)child_sock);
  long r = reply_with_fd(req, pid, pidfd);
  if (r < 0) {
    /* The daemon cannot hold the child without its pidfd: end it. Its
     * reaping is left to its parent (the daemon, under CLONE_PARENT). */
    PW_SYSCALL4(__NR_pidfd_send_signal, pidfd, PW_SIGKILL, 0, 0);
    reply(req, r, 0);
  }
  pw_close(pidfd);
}

static void do_recv_fd(const struct pw_agent_request *req) {
  if (g_fd_count == 0) {
    reply(req, -ENOMSG, 0);
    return;
  }
  int fd = g_fds[g_fd_head];
  g_fd_head = (g_fd_head + 1) % PW_AGENT_MAX_PENDING_FDS;
  --g_fd_count;

  int64_t target = (int64_t)req->args[0];
  uint64_t flags = req->args[1];
  int cloexec = (flags & PW_RECV_FD_CLOEXEC) != 0;
  long result;
  if ((flags & ~(uint64_t)PW_RECV_FD_CLOEXEC) != 0) {
    result = -EINVAL;
  } else if (target < -1 || target > 0x7fffffff) {
    result = -EBADF;
  } else if (target == g_sock) {
    result = -EBUSY; /* replacing our own socket would end the session */
  } else if (target == -1 || target == fd) {
    result =
        PW_SYSCALL3(__NR_fcntl, fd, PW_F_SETFD, cloexec ? PW_FD_CLOEXEC : 0);
    if (result == 0) {
      reply(req, fd, 0);
      return;
    }
  } else {
    result = PW_SYSCALL3(__NR_dup3, fd, target, cloexec ? PW_O_CLOEXEC : 0);
  }
  pw_close(fd);
  reply(req, result, 0);
}

static void handle(const struct pw_agent_request *req) {
  if (req->flags & PW_REQ_FLUSH_FIRST) flush_out();
  if (req->flags & ~(uint32_t)PW_REQ_KNOWN_FLAGS) {
    if (req->op == PW_OP_WRITE_MEM) in_take(0, req->args[1]);
    reply(req, -EINVAL, 0);
    return;
  }
  switch (req->op) {
    case PW_OP_SYSCALL:
      reply(req,
            pw_syscall6((long)req->nr, (long)req->args[0], (long)req->args[1],
                        (long)req->args[2], (long)req->args[3],
                        (long)req->args[4], (long)req->args[5]),
            0);
      return;
    case PW_OP_READ_MEM:
      do_read_mem(req);
      return;
    case PW_OP_WRITE_MEM:
      do_write_mem(req);
      return;
    case PW_OP_SEND_FD:
      do_send_fd(req);
      return;
    case PW_OP_RECV_FD:
      do_recv_fd(req);
      return;
    case PW_OP_EXIT:
      reply(req, 0, 0);
      flush_out();
      pw_exit((int)req->args[0]);
    case PW_OP_CLONE:
      do_clone(req);
      return;
    default:
      reply(req, -ENOSYS, 0);
      return;
  }
}

/* ------------------------------------------------------------------------ */
/* Entry. */

/* Parses a decimal fd number; -1 if s is not one. */
static int parse_fd(const char *s) {
  if (s == 0 || *s == '\0') return -1;
  long v = 0;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (*s - '0');
    if (v > 0x7fffffff) return -1;
  }
  return (int)v;
}

void pw_agent_main(uint64_t *initial_sp) {
  long argc = (long)initial_sp[0];
  char **argv = (char **)(initial_sp + 1);
  g_sock = PW_AGENT_DEFAULT_SOCKET_FD;
  if (argc > 2) pw_exit(PW_AGENT_EXIT_USAGE);
  if (argc == 2) {
    g_sock = parse_fd(argv[1]);
    if (g_sock < 0) pw_exit(PW_AGENT_EXIT_USAGE);
  }
  if (install_fault_handlers() != 0) pw_exit(PW_AGENT_EXIT_STARTUP);

  /* A program this thread execve()s must not inherit the daemon's line. */
  PW_SYSCALL3(__NR_fcntl, g_sock, PW_F_SETFD, PW_FD_CLOEXEC);
  send_hello();

  for (;;) {
    in_fill(sizeof(struct pw_agent_request), 0);
    struct pw_agent_request req;
    memcpy(&req, g_in + g_in_start, sizeof(req));
    g_in_start += sizeof(req);
    handle(&req);
  }
}
