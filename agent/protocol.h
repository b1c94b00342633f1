/*
 * Wire protocol between procwarpd and procwarp-agent.
 *
 * procwarp-agent is a tiny static, libc-free syscall server that the daemon
 * runs as a "thread" it controls (see docs/architecture.md, "Agent threads"). This header
 * is the whole contract between the two sides: plain C structs and constants,
 * usable from C (the agent is freestanding C) and from C++ (the daemon, the
 * tests). Everything is little-endian, native x86-64 layout; the agent always
 * runs on the same machine as the daemon, so no byte swapping is done.
 *
 * ---------------------------------------------------------------------------
 * Launching
 *
 *   procwarp-agent [SOCKET_FD]
 *
 * The agent talks over one connected AF_UNIX SOCK_STREAM socket (normally one
 * end of a socketpair). It marks the socket close-on-exec at start, so a
 * program the thread execve()s does not inherit it (and the daemon sees EOF
 * when an execve succeeds). It is file descriptor SOCKET_FD (decimal) when given,
 * else PW_AGENT_DEFAULT_SOCKET_FD (3). The agent touches no other descriptor
 * on its own, ignores its environment, and needs nothing mapped or open
 * beyond what the kernel gives an exec'd static PIE. A bad command line makes
 * it exit with PW_AGENT_EXIT_USAGE before writing anything.
 *
 * ---------------------------------------------------------------------------
 * Stream layout
 *
 *   agent -> daemon:  pw_agent_hello, then one pw_agent_response per request
 *                     (READ_MEM responses are followed by their data).
 *   daemon -> agent:  pw_agent_request, one after another (WRITE_MEM requests
 *                     are followed by their data).
 *
 * The hello is written as soon as the agent starts; the daemon checks magic,
 * version and the three sizes before sending anything.
 *
 * Pipelining: the daemon may write any number of requests before reading any
 * reply. The agent runs them strictly in order, one at a time, and answers
 * each with exactly one response carrying the request's `tag` (EXIT too, just
 * before exiting). Responses are batched: the agent writes its buffered
 * responses when the buffer fills, when it has no more request bytes
 * available without blocking, when a request has PW_REQ_FLUSH_FIRST, and
 * before SEND_FD, EXIT and large READ_MEM replies. So a request whose syscall
 * may block until the daemon has seen an earlier reply must carry
 * PW_REQ_FLUSH_FIRST, otherwise both sides wait forever. Socket buffers are
 * finite: the daemon must keep reading responses while it writes a long
 * batch (a reader thread, or non-blocking I/O), or make the buffers large
 * enough for the whole batch.
 *
 * File descriptors travel as SCM_RIGHTS ancillary data on the same socket.
 * Both sides must therefore read with recvmsg() and room for a control
 * message; a plain read() makes the kernel discard (close) passed fds.
 *
 * Unknown ops get -ENOSYS, unknown bits in `flags` get -EINVAL; the stream
 * stays in sync either way (WRITE_MEM data is always consumed).
 *
 * ---------------------------------------------------------------------------
 * Ops (a = args[]; unused args and fields must be zero)
 *
 * PW_OP_SYSCALL    Run syscall `nr` with a[0..5] as its six arguments.
 *                  result: the raw kernel return value. Values in
 *                  [-4095, -1] are -errno; anything else is success (user
 *                  addresses returned by mmap are below 2^47, so positive).
 *                  The agent does not interpret the call: whatever it does to
 *                  the agent (exit, execve, closing the agent's socket,
 *                  unmapping the agent, replacing its SIGSEGV/SIGBUS
 *                  handlers) is the caller's responsibility.
 *
 * PW_OP_READ_MEM   Send a[1] bytes starting at address a[0] of the agent's
 *                  own memory. The in-band fallback for when
 *                  process_vm_readv is not allowed.
 *                  result: number of bytes that follow the response
 *                  (== payload_len). Less than a[1] when the range runs into
 *                  an unreadable page (only the readable prefix is sent);
 *                  -EFAULT (and no data) when the first byte is unreadable;
 *                  0 for a[1] == 0.
 *
 * PW_OP_WRITE_MEM  The request is followed by exactly a[1] bytes, which the
 *                  agent copies to address a[0] of its own memory.
 *                  result: number of bytes written, shorter than a[1] when
 *                  the range runs into an unwritable page (the prefix up to
 *                  that page is written, the rest of the data is read and
 *                  dropped); -EFAULT when the first byte is unwritable.
 *                  The data is always consumed, whatever the result.
 *                  Writability is probed with an atomic no-op RMW
 *                  (lock or $0), so concurrent writers of shared memory lose
 *                  nothing outside the written range.
 *
 * PW_OP_SEND_FD    Send the agent's descriptor a[0] to the daemon. The
 *                  response itself carries it as SCM_RIGHTS: it is written by
 *                  its own sendmsg(), so the fd arrives with the recvmsg()
 *                  that returns the response's first byte, and no recvmsg()
 *                  returns more than one passed-fd message.
 *                  result: a[0] on success (the agent keeps its own copy
 *                  open), or -errno (e.g. -EBADF) with no fd attached.
 *
 * PW_OP_RECV_FD    Take one descriptor the daemon passed with SCM_RIGHTS and
 *                  install it. Attach the fd to the sendmsg() that writes this
 *                  request (anything that makes it arrive no later than the
 *                  request's last byte works). Received fds are queued in
 *                  arrival order (at most PW_AGENT_MAX_PENDING_FDS, extra ones
 *                  are closed) and each RECV_FD takes the oldest.
 *                  a[0]: target fd number, or -1 to keep whatever number the
 *                        kernel picked. With a target, the fd is dup3()'d
 *                        there (replacing what was open) and the received
 *                        number is closed. The agent's socket is refused
 *                        (-EBUSY).
 *                  a[1]: PW_RECV_FD_CLOEXEC or 0: the close-on-exec state of
 *                        the installed fd (default: inherited across exec).
 *                  result: the installed fd number, or -errno (-ENOMSG when
 *                  no fd was passed; the queued fd is closed on any error).
 *
 * PW_OP_EXIT       Reply (result 0), send every buffered response, then
 *                  exit_group(a[0]). The daemon sees the response, then EOF.
 *
 * PW_OP_CLONE      Clone a child agent of this agent (rsyscall's ChildThread):
 *                  a raw clone() without CLONE_VM, so the child has a copy of
 *                  this agent's memory and, per a[0], a copy or a share of its
 *                  fd table, and its namespaces.
 *                  a[0]: clone flags, a subset of PW_CLONE_ALLOWED_FLAGS
 *                        (others: -EINVAL). The agent adds CLONE_PIDFD and
 *                        SIGCHLD as the exit signal.
 *                  a[1]: the child's socket: an fd of this agent (installed
 *                        with RECV_FD beforehand, close-on-exec), connected to
 *                        the daemon; not the agent's own socket (-EBUSY).
 *                  Every earlier response is sent first.
 *                  result: the child's pid as this agent sees it, or -errno
 *                  of clone() (nothing is created then). On success the
 *                  response carries the child's pidfd as SCM_RIGHTS, exactly
 *                  like SEND_FD, so the daemon names the child without a pid
 *                  race; the agent closes its own copy.
 *                  Without CLONE_FILES the parent closes a[1] and the child
 *                  closes the parent's socket and any queued RECV_FD fds, so
 *                  each agent keeps only its own socket; with CLONE_FILES
 *                  both stay in the shared table.
 *                  The child serves on a[1] as a fresh agent: it sets
 *                  PR_SET_PDEATHSIG(SIGKILL), writes its own hello and then
 *                  blocks reading requests. Nothing it does before the first
 *                  request depends on its credentials, so a daemon that must
 *                  write a new user namespace's uid_map/gid_map does so
 *                  after the hello and before sending anything.
 *                  With CLONE_PARENT the child becomes a child of this
 *                  agent's parent (the daemon, which can then reap it);
 *                  clone() refuses that (-EINVAL) in the init of a pid
 *                  namespace.
 *
 * ---------------------------------------------------------------------------
 * Agent exit status
 *
 *   a[0] & 0xff of an EXIT request.
 *   PW_AGENT_EXIT_EOF         the daemon closed the socket at a request
 *                             boundary (EOF, or the peer vanished).
 *   PW_AGENT_EXIT_USAGE       bad command line.
 *   PW_AGENT_EXIT_STARTUP     could not install its fault handlers.
 *   PW_AGENT_EXIT_TRUNCATED   EOF in the middle of a request or its data.
 *   PW_AGENT_EXIT_IO          unexpected socket error (e.g. not a socket).
 *   PW_AGENT_EXIT_FAULT       memory it had just probed faulted during a
 *                             transfer (mappings changed under it); the
 *                             stream can no longer be kept in sync.
 *   death by SIGSEGV/SIGBUS   a fault outside the agent's probes, e.g. the
 *                             daemon unmapped or overwrote the agent itself.
 */
#ifndef PROCWARP_AGENT_PROTOCOL_H_
#define PROCWARP_AGENT_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define PW_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define PW_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* "PWAG" in memory order, so a hex dump of the stream shows it. */
#define PW_AGENT_MAGIC 0x47415750u
#define PW_AGENT_PROTOCOL_VERSION 1u

#define PW_AGENT_DEFAULT_SOCKET_FD 3
#define PW_AGENT_MAX_PENDING_FDS 64

/* Values of pw_agent_request.op. */
enum pw_agent_op {
  PW_OP_SYSCALL = 1,
  PW_OP_READ_MEM = 2,
  PW_OP_WRITE_MEM = 3,
  PW_OP_SEND_FD = 4,
  PW_OP_RECV_FD = 5,
  PW_OP_EXIT = 6,
  PW_OP_CLONE = 7,
};

/* Bits of pw_agent_request.flags. */
/* Write every earlier response before running this request. */
#define PW_REQ_FLUSH_FIRST 0x1u
#define PW_REQ_KNOWN_FLAGS (PW_REQ_FLUSH_FIRST)

/* Bits of args[1] of PW_OP_RECV_FD. */
#define PW_RECV_FD_CLOEXEC 0x1u

/* Flags PW_OP_CLONE accepts in args[0]: CLONE_PARENT, CLONE_FILES,
 * CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
 * CLONE_NEWNET (the kernel's values, spelled out so C++ users need no
 * <linux/sched.h>). */
#define PW_CLONE_ALLOWED_FLAGS 0x7c028400ull

/* Agent exit statuses other than the code of an EXIT request. */
#define PW_AGENT_EXIT_EOF 0
#define PW_AGENT_EXIT_USAGE 2
#define PW_AGENT_EXIT_STARTUP 123
#define PW_AGENT_EXIT_TRUNCATED 124
#define PW_AGENT_EXIT_IO 125
#define PW_AGENT_EXIT_FAULT 126

/* First bytes the agent writes, once. */
struct pw_agent_hello {
  uint32_t magic;         /* PW_AGENT_MAGIC */
  uint16_t version;       /* PW_AGENT_PROTOCOL_VERSION */
  uint16_t hello_size;    /* sizeof(struct pw_agent_hello) */
  uint16_t request_size;  /* sizeof(struct pw_agent_request) */
  uint16_t response_size; /* sizeof(struct pw_agent_response) */
  int32_t pid;            /* getpid() in the agent's pid namespace */
  int32_t socket_fd;      /* the fd the agent serves on */
  uint32_t reserved0;     /* zero */
  uint64_t reserved1;     /* zero */
};

/* One request, daemon -> agent. */
struct pw_agent_request {
  uint32_t op;      /* enum pw_agent_op */
  uint32_t flags;   /* PW_REQ_* bits */
  int64_t nr;       /* syscall number for PW_OP_SYSCALL, else 0 */
  uint64_t args[6]; /* op arguments, see the op list above */
  uint64_t tag;     /* opaque, echoed in the response */
};

/* One response, agent -> daemon. */
struct pw_agent_response {
  int64_t result;       /* raw kernel-style result: >= 0, or -errno */
  uint64_t tag;         /* the request's tag */
  uint32_t op;          /* the request's op, for debugging */
  uint32_t reserved;    /* zero */
  uint64_t payload_len; /* bytes following this response (READ_MEM only) */
};

PW_STATIC_ASSERT(sizeof(struct pw_agent_hello) == 32, "hello layout");
PW_STATIC_ASSERT(offsetof(struct pw_agent_hello, pid) == 12, "hello layout");
PW_STATIC_ASSERT(sizeof(struct pw_agent_request) == 72, "request layout");
PW_STATIC_ASSERT(offsetof(struct pw_agent_request, nr) == 8, "request layout");
PW_STATIC_ASSERT(offsetof(struct pw_agent_request, args) == 16,
                 "request layout");
PW_STATIC_ASSERT(offsetof(struct pw_agent_request, tag) == 64,
                 "request layout");
PW_STATIC_ASSERT(sizeof(struct pw_agent_response) == 32, "response layout");
PW_STATIC_ASSERT(offsetof(struct pw_agent_response, tag) == 8,
                 "response layout");
PW_STATIC_ASSERT(offsetof(struct pw_agent_response, payload_len) == 24,
                 "response layout");

#endif /* PROCWARP_AGENT_PROTOCOL_H_ */
