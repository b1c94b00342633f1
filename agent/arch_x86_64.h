/*
 * The x86-64 part of procwarp-agent: raw system calls, the process entry
 * point, the signal-return trampoline, fault-tolerant memory probes and the
 * few kernel ABI layouts that differ between architectures. Everything else
 * in the agent is plain freestanding C; porting to another architecture means
 * writing this file again.
 *
 * Include it from exactly one translation unit (agent.c): it defines the
 * top-level assembly symbols.
 */
#ifndef PROCWARP_AGENT_ARCH_X86_64_H_
#define PROCWARP_AGENT_ARCH_X86_64_H_

#if !defined(__x86_64__)
#error "arch_x86_64.h is for x86-64 only"
#endif

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* System calls. The kernel returns -errno in rax; nothing caches anything. */

static inline long pw_syscall6(long nr, long a0, long a1, long a2, long a3,
                               long a4, long a5) {
  register long r10 __asm__("r10") = a3;
  register long r8 __asm__("r8") = a4;
  register long r9 __asm__("r9") = a5;
  long ret;
  /* syscall clobbers rcx (return rip) and r11 (rflags). "memory" because the
   * kernel may read or write any buffer the arguments point to. */
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8),
                     "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

#define PW_SYSCALL0(nr) pw_syscall6((nr), 0, 0, 0, 0, 0, 0)
#define PW_SYSCALL1(nr, a) pw_syscall6((nr), (long)(a), 0, 0, 0, 0, 0)
#define PW_SYSCALL2(nr, a, b) \
  pw_syscall6((nr), (long)(a), (long)(b), 0, 0, 0, 0)
#define PW_SYSCALL3(nr, a, b, c) \
  pw_syscall6((nr), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define PW_SYSCALL4(nr, a, b, c, d) \
  pw_syscall6((nr), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define PW_SYSCALL5(nr, a, b, c, d, e) \
  pw_syscall6((nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* ------------------------------------------------------------------------ */
/* Memory primitives. The compiler may emit calls to memcpy/memset even in
 * freestanding code, so agent.c defines those on top of these. rep movsb /
 * rep stosb are fast on every CPU that matters here and, being asm, cannot be
 * "optimised" back into a call to memcpy itself. */

static inline void pw_copy_bytes(void *dst, const void *src, size_t n) {
  __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

static inline void pw_copy_bytes_backward(void *dst, const void *src,
                                          size_t n) {
  if (n == 0) return;
  /* With the direction flag set, rep movsb walks down from the last byte,
   * which is what an overlapping move to a higher address needs. */
  unsigned char *d = (unsigned char *)dst + n - 1;
  const unsigned char *s = (const unsigned char *)src + n - 1;
  __asm__ volatile("std\n\trep movsb\n\tcld"
                   : "+D"(d), "+S"(s), "+c"(n)
                   :
                   : "memory");
}

static inline void pw_fill_bytes(void *dst, int value, size_t n) {
  __asm__ volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(value) : "memory");
}

/* ------------------------------------------------------------------------ */
/* Process entry. The kernel starts us with rsp pointing at argc, followed by
 * argv[], NULL, envp[], NULL, auxv. rsp is 16-byte aligned there; the call
 * pushes a return address so pw_agent_main sees the ABI's usual alignment.
 * rbp is zeroed to end frame-pointer walks. Being a static PIE with no
 * relocations (checked by the test), nothing has to be fixed up first. */

__attribute__((noreturn, used, visibility("hidden"))) void pw_agent_main(
    uint64_t *initial_sp);

__asm__(
    ".text\n"
    ".globl _start\n"
    ".type _start, @function\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  mov %rsp, %rdi\n"
    "  and $-16, %rsp\n"
    "  call pw_agent_main\n"
    "  hlt\n"
    ".size _start, . - _start\n");

/* ------------------------------------------------------------------------ */
/* Signals. x86-64 requires SA_RESTORER: the kernel "returns" from a handler
 * into the restorer, which must call rt_sigreturn (15). */

#define PW_SIGBUS 7
#define PW_SIGSEGV 11
#define PW_SA_SIGINFO 0x00000004ul
#define PW_SA_RESTORER 0x04000000ul
#define PW_SIG_DFL 0ul

/* The kernel's struct sigaction for rt_sigaction on x86-64 (not libc's). */
struct pw_kernel_sigaction {
  uintptr_t handler;
  unsigned long flags;
  uintptr_t restorer;
  uint64_t mask;
};
#define PW_KERNEL_SIGSET_SIZE 8

void pw_sigreturn_trampoline(void) __attribute__((visibility("hidden")));

__asm__(
    ".text\n"
    ".globl pw_sigreturn_trampoline\n"
    ".hidden pw_sigreturn_trampoline\n"
    ".type pw_sigreturn_trampoline, @function\n"
    "pw_sigreturn_trampoline:\n"
    "  mov $15, %eax\n"
    "  syscall\n"
    "  hlt\n"
    ".size pw_sigreturn_trampoline, . - pw_sigreturn_trampoline\n");

/* Where the interrupted rip lives in the ucontext_t the kernel hands a
 * SA_SIGINFO handler: uc_flags (8) + uc_link (8) + uc_stack (24), then
 * struct sigcontext whose general registers are r8..r15, rdi, rsi, rbp, rbx,
 * rdx, rax, rcx, rsp, rip: rip is the 17th 8-byte slot. */
#define PW_UCONTEXT_RIP_OFFSET (40 + 16 * 8)

static inline uintptr_t *pw_ucontext_pc(void *ucontext) {
  return (uintptr_t *)((char *)ucontext + PW_UCONTEXT_RIP_OFFSET);
}

/* ------------------------------------------------------------------------ */
/* Fault-tolerant probes, the user-space cousin of the kernel's exception
 * tables. Each returns 0 when the byte at `addr` can be read (or written),
 * or -EFAULT (-14) when touching it raised SIGSEGV/SIGBUS: the agent's fault
 * handler sees the fault at one of the two *_insn labels and resumes at
 * pw_probe_fixup instead. The write probe is `lock orb $0`: it needs write
 * permission but stores back the value it read atomically, so a concurrent
 * writer of shared memory loses nothing. */

int pw_probe_read(uintptr_t addr) __attribute__((visibility("hidden")));
int pw_probe_write(uintptr_t addr) __attribute__((visibility("hidden")));
extern const char pw_probe_read_insn[] __attribute__((visibility("hidden")));
extern const char pw_probe_write_insn[] __attribute__((visibility("hidden")));
extern const char pw_probe_fixup[] __attribute__((visibility("hidden")));

__asm__(
    ".text\n"
    ".globl pw_probe_read, pw_probe_write\n"
    ".globl pw_probe_read_insn, pw_probe_write_insn, pw_probe_fixup\n"
    ".hidden pw_probe_read, pw_probe_write\n"
    ".hidden pw_probe_read_insn, pw_probe_write_insn, pw_probe_fixup\n"
    ".type pw_probe_read, @function\n"
    "pw_probe_read:\n"
    "pw_probe_read_insn:\n"
    "  movb (%rdi), %al\n"
    "  xor %eax, %eax\n"
    "  ret\n"
    ".size pw_probe_read, . - pw_probe_read\n"
    ".type pw_probe_write, @function\n"
    "pw_probe_write:\n"
    "pw_probe_write_insn:\n"
    "  lock orb $0, (%rdi)\n"
    "  xor %eax, %eax\n"
    "  ret\n"
    ".size pw_probe_write, . - pw_probe_write\n"
    ".type pw_probe_fixup, @function\n"
    "pw_probe_fixup:\n"
    "  mov $-14, %eax\n"
    "  ret\n"
    ".size pw_probe_fixup, . - pw_probe_fixup\n");

#endif /* PROCWARP_AGENT_ARCH_X86_64_H_ */
