/* attach_target: target programs for the attach backend's tests
 * (daemon/ptrace/, daemon/exec/). Each mode sets itself up, prints one line
 * starting with "ready" on stdout, does the thing the test attaches to, and
 * reports on stdout what its own code saw, so a test can check that being
 * attached, injected into and detached changed nothing.
 *
 *   checksum     loops over checksum_step() until a byte arrives on stdin,
 *                then prints "iterations=N checksum=C"
 *   read         blocks in read(0); prints "read=N data=... errno=E"
 *   sleep MS     one nanosleep(MS); prints "rc=R errno=E elapsed_ms=T"
 *   futex        main thread in FUTEX_WAIT until a helper thread, after
 *                reading stdin, wakes it; prints "futex eintr=N value=V"
 *   epoll        epoll_wait(-1) on stdin; prints "epoll rc=R errno=E"
 *   threads N    N busy threads, main blocked in read(0); prints the tids
 *   seccomp      filter: getppid -> SIGSYS (RET_TRAP), getuid -> EPERM;
 *                then as "read"
 *   sigstop      stops itself (SIGSTOP), prints "continued", then as "read"
 *   exec PATH    reads a byte from stdin, then execs PATH (--version)
 *   vector       puts a pattern in xmm0-xmm15, blocks in a raw read(0)
 *                syscall, then prints "vector read=N same=S" (S=1 when the
 *                registers still hold the pattern)
 *   vfork        prints "ready", vforks a child that reads one byte from
 *                stdin and exits (the parent sleeps uninterruptibly until
 *                then), prints "vfork done", then as "read"
 *   zombie       forks a child that exits at once and is never reaped;
 *                prints "ready ... child=PID", then as "read"
 *   nodump       prctl(PR_SET_DUMPABLE, 0), then as "read"
 *
 * The ready line carries addresses the tests use: "ready pid=P buf=0x...".
 * checksum_step(), crash_null() and announce_and_block() are called remotely
 * by the exec tests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A scratch buffer tests may read and write through the target's memory. */
char pw_buffer[4096] = "procwarp attach target buffer";
volatile uint64_t pw_counters[64];

__attribute__((noinline, used)) uint64_t checksum_step(uint64_t state,
                                                       uint64_t i) {
  state ^= i + 0x9e3779b97f4a7c15ULL + (state << 6) + (state >> 2);
  return state * 0xff51afd7ed558ccdULL;
}

__attribute__((noinline, used)) uint64_t crash_null(uint64_t x) {
  volatile uint64_t* p = (volatile uint64_t*)(uintptr_t)(x & 0);
  return *p;
}

/* Called remotely: says "in call" on stdout, then never returns (the test
 * kills the target or cancels the call while it blocks). */
__attribute__((noinline, used)) uint64_t announce_and_block(void) {
  static const char line[] = "in call\n";
  (void)!write(1, line, sizeof(line) - 1);
  for (;;) pause();
}

static void ready(const char* extra) {
  printf("ready pid=%d buf=%p counters=%p %s\n", getpid(), (void*)pw_buffer,
         (void*)pw_counters, extra);
  fflush(stdout);
}

static int stdin_has_data(void) {
  char c;
  ssize_t n = read(0, &c, 1);
  return n != 0 && !(n < 0 && errno == EAGAIN);
}

static int do_checksum(void) {
  /* stdin non-blocking: polled every 64k steps for the stop byte. */
  int flags = fcntl(0, F_GETFL);
  fcntl(0, F_SETFL, flags | O_NONBLOCK);
  ready("");
  uint64_t state = 1, i = 0;
  for (;;) {
    state = checksum_step(state, i);
    ++i;
    if ((i & 0xffff) == 0 && stdin_has_data()) break;
  }
  printf("iterations=%llu checksum=%llu\n", (unsigned long long)i,
         (unsigned long long)state);
  return 0;
}

static int do_read(void) {
  char buf[256];
  ssize_t n = read(0, buf, sizeof(buf) - 1);
  int err = n < 0 ? errno : 0;
  if (n < 0) n = -1;
  buf[n > 0 ? n : 0] = 0;
  printf("read=%zd data=%s errno=%d\n", n, buf, err);
  return 0;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int do_sleep(long ms) {
  ready("");
  struct timespec req = {ms / 1000, (ms % 1000) * 1000000L}, rem;
  int64_t start = now_ms();
  int rc = nanosleep(&req, &rem);
  int err = rc < 0 ? errno : 0;
  printf("rc=%d errno=%d elapsed_ms=%lld\n", rc, err,
         (long long)(now_ms() - start));
  return 0;
}

static uint32_t futex_word;

static void* futex_waker(void* arg) {
  (void)arg;
  char c;
  if (read(0, &c, 1) != 1) return NULL;
  __atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  return NULL;
}

static int do_futex(void) {
  pthread_t t;
  pthread_create(&t, NULL, futex_waker, NULL);
  ready("");
  /* As real code does: wait while the word is 0; EAGAIN (the word changed
   * before the wait began) is normal, EINTR is what must not be seen. */
  int eintr = 0;
  while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0) {
    long rc = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    if (rc < 0 && errno == EINTR) ++eintr;
  }
  pthread_join(t, NULL);
  printf("futex eintr=%d value=%u\n", eintr, futex_word);
  return 0;
}

static int do_epoll(void) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
  ready("");
  struct epoll_event out;
  int rc = epoll_wait(ep, &out, 1, -1);
  int err = rc < 0 ? errno : 0;
  printf("epoll rc=%d errno=%d\n", rc, err);
  return 0;
}

static void* busy(void* arg) {
  volatile uint64_t* counter = arg;
  for (;;) ++*counter;
  return NULL;
}

static int do_threads(int n) {
  pthread_t t;
  for (int i = 0; i < n && i < 64; ++i) {
    pthread_create(&t, NULL, busy, (void*)&pw_counters[i]);
  }
  ready("");
  return do_read();
}

static int do_vector(void) {
  unsigned char pattern[256], after[256];
  for (int i = 0; i < 256; ++i) pattern[i] = (unsigned char)(i * 7 + 3);
  char buf[64];
  long n;
  ready("");
  /* No libc code runs between loading and storing the registers. */
  __asm__ volatile(
      "movdqu 0(%[p]), %%xmm0\n movdqu 16(%[p]), %%xmm1\n"
      "movdqu 32(%[p]), %%xmm2\n movdqu 48(%[p]), %%xmm3\n"
      "movdqu 64(%[p]), %%xmm4\n movdqu 80(%[p]), %%xmm5\n"
      "movdqu 96(%[p]), %%xmm6\n movdqu 112(%[p]), %%xmm7\n"
      "movdqu 128(%[p]), %%xmm8\n movdqu 144(%[p]), %%xmm9\n"
      "movdqu 160(%[p]), %%xmm10\n movdqu 176(%[p]), %%xmm11\n"
      "movdqu 192(%[p]), %%xmm12\n movdqu 208(%[p]), %%xmm13\n"
      "movdqu 224(%[p]), %%xmm14\n movdqu 240(%[p]), %%xmm15\n"
      "syscall\n"
      "movdqu %%xmm0, 0(%[a])\n movdqu %%xmm1, 16(%[a])\n"
      "movdqu %%xmm2, 32(%[a])\n movdqu %%xmm3, 48(%[a])\n"
      "movdqu %%xmm4, 64(%[a])\n movdqu %%xmm5, 80(%[a])\n"
      "movdqu %%xmm6, 96(%[a])\n movdqu %%xmm7, 112(%[a])\n"
      "movdqu %%xmm8, 128(%[a])\n movdqu %%xmm9, 144(%[a])\n"
      "movdqu %%xmm10, 160(%[a])\n movdqu %%xmm11, 176(%[a])\n"
      "movdqu %%xmm12, 192(%[a])\n movdqu %%xmm13, 208(%[a])\n"
      "movdqu %%xmm14, 224(%[a])\n movdqu %%xmm15, 240(%[a])\n"
      : "=a"(n)
      : "a"((long)SYS_read), "D"(0L), "S"(buf), "d"(sizeof(buf)),
        [p] "r"(pattern), [a] "r"(after)
      : "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
        "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "xmm14", "xmm15");
  printf("vector read=%ld same=%d\n", n, memcmp(pattern, after, 256) == 0);
  return 0;
}

static int install_seccomp(void) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getuid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODE [ARG]\n", argv[0]);
    return 2;
  }
  const char* mode = argv[1];
  if (strcmp(mode, "checksum") == 0) return do_checksum();
  if (strcmp(mode, "read") == 0) {
    ready("");
    return do_read();
  }
  if (strcmp(mode, "sleep") == 0 && argc > 2) return do_sleep(atol(argv[2]));
  if (strcmp(mode, "futex") == 0) return do_futex();
  if (strcmp(mode, "epoll") == 0) return do_epoll();
  if (strcmp(mode, "threads") == 0 && argc > 2) return do_threads(atoi(argv[2]));
  if (strcmp(mode, "seccomp") == 0) {
    if (install_seccomp() != 0) {
      perror("seccomp");
      return 1;
    }
    ready("");
    return do_read();
  }
  if (strcmp(mode, "sigstop") == 0) {
    ready("");
    raise(SIGSTOP);
    printf("continued\n");
    fflush(stdout);
    return do_read();
  }
  if (strcmp(mode, "vector") == 0) return do_vector();
  if (strcmp(mode, "vfork") == 0) {
    ready("");
    pid_t child = vfork();
    if (child == 0) {
      char c;
      (void)!read(0, &c, 1);
      _exit(0);
    }
    printf("vfork done\n");
    fflush(stdout);
    return do_read();
  }
  if (strcmp(mode, "zombie") == 0) {
    pid_t child = fork();
    if (child == 0) _exit(0);
    char extra[32];
    snprintf(extra, sizeof(extra), "child=%d", child);
    /* The child is a zombie once it has exited: wait for that without
     * reaping it. */
    siginfo_t info;
    waitid(P_PID, child, &info, WEXITED | WNOWAIT);
    ready(extra);
    return do_read();
  }
  if (strcmp(mode, "nodump") == 0) {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    ready("");
    return do_read();
  }
  if (strcmp(mode, "exec") == 0 && argc > 2) {
    ready("");
    char c;
    if (read(0, &c, 1) != 1) return 1;
    execl(argv[2], argv[2], "--version", (char*)NULL);
    perror("execl");
    return 1;
  }
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
