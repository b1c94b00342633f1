// Remote function calls in an attached, stopped target (what gdb's `call`
// and Frida's injector do), built on daemon/ptrace's Operation.
//
// How a call runs, and why:
// - On the target thread's own stack, below the red zone: rsp = (saved rsp
//   - 128 - 256) rounded down to 16, minus 8 for the return address, so
//   the callee sees the ABI's alignment and nothing the interrupted code may
//   still use (the 128-byte red zone below its rsp) is touched.
// - The return address is kReturnTrap, a canonical *kernel-half* address:
//   no user mapping can ever be there, so returning to it faults with
//   SIGSEGV at exactly that rip, which the tracer catches as "the call
//   returned" (rax is the result) and the target never sees. No code is
//   written into the target; only the 8-byte return address on its stack,
//   which is put back afterwards.
// - rax = 0 (no vector arguments for varargs callees), DF clear, orig_rax =
//   -1 (no syscall restart now); the signal mask is the target's own.
// - Any other fatal signal stop (SIGSEGV/SIGBUS/SIGILL/SIGFPE raised by the
//   CPU, a kernel SIGTRAP from int3, seccomp's SIGSYS) is a crash in the
//   callee: it is suppressed, the result carries the signal and fault
//   address, and Operation::Finish puts the registers, XSAVE area and mask
//   back — the target goes on as if nothing happened. Signals sent by other
//   processes meanwhile are kept and delivered afterwards.
// - A callee that does not return before the caller's deadline is
//   abandoned the same way (DEADLINE_EXCEEDED). A callee interrupted while
//   holding a lock the target's own code then needs (malloc's, the loader's)
//   is the caller's risk, as with gdb.
#ifndef PROCWARP_DAEMON_EXEC_REMOTE_CALL_H_
#define PROCWARP_DAEMON_EXEC_REMOTE_CALL_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/ptrace/operation.h"

namespace procwarp::exec {

// Where a remote call returns to: canonical, in the kernel half, unmapped
// for user space on every x86-64 paging mode.
inline constexpr uint64_t kReturnTrap = 0xffffffffdead0000ULL;

struct CallResult {
  uint64_t value = 0;          // rax when the call returned
  int signal = 0;              // the callee crashed with this signal
  uint64_t fault_address = 0;  // si_addr of the crash
  uint64_t fault_rip = 0;      // rip at the crash
  bool crashed() const { return signal != 0; }
};

// Calls `function` with up to 6 integer/pointer arguments in the stopped
// target of `op`. The target's state is restored by op's Finish().
absl::StatusOr<CallResult> CallFunction(ptrace::Operation& op, uint64_t function,
                                        absl::Span<const uint64_t> args);

// Resolves `symbol` (see SymbolResolver::Resolve) and calls it; an IFUNC is
// resolved by calling its resolver first. `called` (optional) gets what was
// called: the object and the final address (the IFUNC's choice).
absl::StatusOr<CallResult> CallSymbol(ptrace::Operation& op,
                                      const SymbolResolver& symbols,
                                      absl::string_view symbol,
                                      absl::Span<const uint64_t> args,
                                      ResolvedSymbol* called = nullptr);

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_REMOTE_CALL_H_
