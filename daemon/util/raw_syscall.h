// RawSyscall: a system call made with the syscall instruction itself, no libc.
//
// For code that runs where libc must not be touched: the spawn child, which
// shares the daemon's memory (and the spawning thread's TLS) while the
// daemon keeps running, so even errno is not its to write. The result is
// the kernel's: a value >= 0, or -errno.
#ifndef PROCWARP_DAEMON_UTIL_RAW_SYSCALL_H_
#define PROCWARP_DAEMON_UTIL_RAW_SYSCALL_H_

namespace procwarp {

__attribute__((always_inline)) inline long RawSyscall(long nr, long a1 = 0,
                                                      long a2 = 0, long a3 = 0,
                                                      long a4 = 0, long a5 = 0,
                                                      long a6 = 0) {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = a4;
  register long r8 __asm__("r8") = a5;
  register long r9 __asm__("r9") = a6;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8),
                     "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a1;
  register long x1 __asm__("x1") = a2;
  register long x2 __asm__("x2") = a3;
  register long x3 __asm__("x3") = a4;
  register long x4 __asm__("x4") = a5;
  register long x5 __asm__("x5") = a6;
  __asm__ volatile("svc 0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                   : "memory");
  return x0;
#else
#error "RawSyscall: add this architecture's system call sequence"
#endif
}

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_UTIL_RAW_SYSCALL_H_
