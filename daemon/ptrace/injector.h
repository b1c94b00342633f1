// Syscall injection into a stopped tracee, without writing code into it.
//
// Why no code is written: the target's text may be shared (a file mapping
// other processes execute), read-only, or checked; and a crash between writing
// and restoring would leave it corrupted. Every process already has a
// `syscall` instruction (bytes 0f 05) mapped executable: the vDSO's fallback
// paths contain several, and libc's text has many. Jumping straight to those
// two bytes runs a syscall whatever instruction they were part of, so any
// occurrence works.
//
// One injected syscall: registers = the saved ones with rip at the
// instruction, rax = nr, arguments in rdi rsi rdx r10 r8 r9, and orig_rax =
// -1 so that the kernel does not apply its syscall-restart logic to the
// interrupted syscall now; PTRACE_SINGLESTEP; the step's SIGTRAP
// signal-delivery-stop with rip just after the instruction marks completion
// and rax holds the result.
//
// Restart semantics: a tracee interrupted inside read/nanosleep/futex/
// epoll_wait stops with rax = -ERESTARTSYS (-ERESTARTNOINTR, -ERESTARTNOHAND,
// -ERESTART_RESTARTBLOCK) and orig_rax = the syscall. The kernel turns that
// into "rewind rip by 2 and retry" (or restart_syscall) on the way back to
// user space — *after* the stop, in the signal path. Every stop we end an
// operation in is inside that path (PTRACE_INTERRUPT's stop, or the step's
// SIGTRAP signal-delivery-stop), so restoring the saved registers verbatim,
// orig_rax included, lets the kernel restart the syscall exactly as it would
// have without us: the target sees no EINTR and a sleep keeps its absolute
// end time (the restart block is untouched).
//
// Batches: a stop costs SETREGS + SINGLESTEP + waitpid + GETREGS per
// syscall, and SETREGS is the dearest request (it rewrites every register,
// segment bases included). Within one batch the registers the previous
// injected syscall left are known (a syscall changes only rax, rcx and r11),
// so the next one writes only what differs (rip, rax, orig_rax and changed
// arguments, with PTRACE_POKEUSER) and reads back only rip and rax. Anything
// unusual (a signal, a seccomp trap, rt_sigreturn or execve, which replace
// registers) falls back to the full write. See docs/attach.md, "Costs".
//
// Seccomp: a filter that returns SECCOMP_RET_TRAP shows up as a SIGSYS
// (si_code SYS_SECCOMP) signal-delivery-stop; it is suppressed (the target
// never sees it) and the result says seccomp refused the call. RET_ERRNO is
// indistinguishable from the syscall failing (the errno is the result);
// RET_KILL kills the target unless the attachment suspends seccomp.
#ifndef PROCWARP_DAEMON_PTRACE_INJECTOR_H_
#define PROCWARP_DAEMON_PTRACE_INJECTOR_H_

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "daemon/ptrace/remote_memory.h"
#include "daemon/ptrace/tracee.h"

namespace procwarp::ptrace {

struct SyscallRequest {
  long nr = 0;
  std::array<uint64_t, 6> args{};
};

struct SyscallResult {
  // The raw return value: >= 0 on success, -errno on failure.
  int64_t value = 0;
  // The target's seccomp filter trapped the call (SIGSYS); it did not run.
  bool seccomp_refused = false;
};

// Finds a `syscall` instruction in the target's executable memory: the vDSO
// first, then libc's text, then any executable file mapping.
// FAILED_PRECONDITION when there is none.
absl::StatusOr<uint64_t> FindSyscallInstruction(pid_t pid, RemoteMemory& memory);

// True when `insn` still holds 0f 05 (one cheap read before each operation).
bool IsSyscallInstruction(RemoteMemory& memory, uint64_t insn);

// Runs `request` in the stopped `tracee` at instruction `insn`, with the
// registers of `base` otherwise. Signals that arrive meanwhile are
// remembered (Tracee::RememberCurrentSignal). The tracee is stopped again
// afterwards, with the injected registers (restore them when done).
// `known` (optional, one per batch, initially empty): the tracee's
// registers as the previous call of the batch left them; see the file
// comment. Only rip, rax, orig_rax and the argument registers of it are
// meaningful.
absl::StatusOr<SyscallResult> InjectSyscall(
    Tracee& tracee, const user_regs_struct& base, uint64_t insn,
    const SyscallRequest& request, const WaitControl& control,
    std::optional<user_regs_struct>* known = nullptr);

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_INJECTOR_H_
