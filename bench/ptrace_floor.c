// ptrace_floor: the kernel's own cost of one injected syscall by
// single-step on this machine, with no procwarp code at all, to compare with
// attach_bench's batch figure (docs/attach.md, "Costs"):
//   full   SETREGS, SINGLESTEP, waitpid, GETREGS per syscall
//   pokes  POKEUSER rip/rax/orig_rax, SINGLESTEP, waitpid, PEEKUSER rax/rip
//          (what daemon/ptrace/injector.cc does after a batch's first call)
// and the CPU cost of SETREGS, GETREGS and a plain syscall alone.
// `ptrace_floor pin` runs tracer and target on CPU 0.
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }

int main(int argc, char** argv) {
  int pin = argc > 1 && strcmp(argv[1], "pin") == 0;
  int n = 20000;
  // A syscall instruction in our own text (the child has the same layout).
  uint8_t* p = (uint8_t*)&syscall;
  uint64_t insn = 0;
  for (int i = 0; i < 4096; i++) if (p[i] == 0x0f && p[i + 1] == 0x05) { insn = (uint64_t)(p + i); break; }
  if (pin) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(0, &s); sched_setaffinity(0, sizeof s, &s); }
  pid_t child = fork();
  if (child == 0) { for (;;) pause(); }
  if (ptrace(PTRACE_SEIZE, child, 0, 0) != 0) { perror("seize"); return 1; }
  ptrace(PTRACE_INTERRUPT, child, 0, 0);
  int st; waitpid(child, &st, __WALL);
  struct user_regs_struct base, r, after;
  ptrace(PTRACE_GETREGS, child, 0, &base);
  double w0 = now_us(CLOCK_MONOTONIC), c0 = now_us(CLOCK_PROCESS_CPUTIME_ID);
  for (int i = 0; i < n; i++) {
    r = base; r.rip = insn; r.rax = SYS_getpid; r.orig_rax = -1;
    ptrace(PTRACE_SETREGS, child, 0, &r);
    ptrace(PTRACE_SINGLESTEP, child, 0, 0);
    waitpid(child, &st, __WALL);
    ptrace(PTRACE_GETREGS, child, 0, &after);
    if ((pid_t)after.rax != child) { fprintf(stderr, "bad %llu\n", after.rax); return 1; }
  }
  double w = now_us(CLOCK_MONOTONIC) - w0, c = now_us(CLOCK_PROCESS_CPUTIME_ID) - c0;
  double w1 = now_us(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < n; i++) ptrace(PTRACE_SETREGS, child, 0, &r);
  double w2 = now_us(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < n; i++) ptrace(PTRACE_GETREGS, child, 0, &after);
  double w3 = now_us(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < n; i++) syscall(SYS_getppid);
  double w4 = now_us(CLOCK_THREAD_CPUTIME_ID);
  printf("  CPU: SETREGS %.2f us, GETREGS %.2f us, a plain syscall %.2f us\n", (w2 - w1) / n, (w3 - w2) / n, (w4 - w3) / n);
  // Variant: only what changes between injected syscalls, by POKEUSER.
  double v0 = now_us(CLOCK_MONOTONIC), vc0 = now_us(CLOCK_PROCESS_CPUTIME_ID);
  r = base; r.rip = insn; r.rax = SYS_getpid; r.orig_rax = -1;
  ptrace(PTRACE_SETREGS, child, 0, &r);
  for (int i = 0; i < n; i++) {
    ptrace(PTRACE_POKEUSER, child, offsetof(struct user_regs_struct, rip), insn);
    ptrace(PTRACE_POKEUSER, child, offsetof(struct user_regs_struct, rax), SYS_getpid);
    ptrace(PTRACE_POKEUSER, child, offsetof(struct user_regs_struct, orig_rax), -1L);
    ptrace(PTRACE_SINGLESTEP, child, 0, 0);
    waitpid(child, &st, __WALL);
    long rax = ptrace(PTRACE_PEEKUSER, child, offsetof(struct user_regs_struct, rax), 0);
    long rip = ptrace(PTRACE_PEEKUSER, child, offsetof(struct user_regs_struct, rip), 0);
    if ((pid_t)rax != child || rip != (long)insn + 2) { fprintf(stderr, "bad\n"); return 1; }
  }
  double vw = now_us(CLOCK_MONOTONIC) - v0, vc = now_us(CLOCK_PROCESS_CPUTIME_ID) - vc0;
  printf("  pokes: %.2f us/syscall wall, %.2f us tracer CPU => %.0f syscalls/s\n", vw / n, vc / n, n / vw * 1e6);
  printf("%s: %.2f us/syscall wall, %.2f us tracer CPU => %.0f syscalls/s\n", pin ? "pinned" : "unpinned", w / n, c / n, n / w * 1e6);
  ptrace(PTRACE_SETREGS, child, 0, &base);
  kill(child, SIGKILL);
  return 0;
}
