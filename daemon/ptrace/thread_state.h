// ThreadState: everything about one stopped tracee thread that injecting a
// syscall or calling a function could change, saved before and put back after:
// the general registers (including orig_rax, which carries the kernel's
// syscall-restart decision), the whole XSAVE area, and the signal mask.
//
// Why the whole XSAVE area: a called function may use any vector register
// (glibc's string functions use AVX/AVX-512), and the target's own code expects
// them untouched. Its size depends on the CPU and on which features the kernel
// enabled (XCR0): 11008 bytes on Intel hosts with AMX, 2432 on AMD hosts with
// AVX-512 and no PKRU. It is never hard-coded: XStateSize() asks the kernel.
// PTRACE_GETREGSET(NT_X86_XSTATE) silently truncates to a short buffer and
// PTRACE_SETREGSET fails with EFAULT on one (gdb 13.1's `call` breaks exactly
// there on the AMX hosts), so the buffer is sized from CPUID leaf 0xD (the
// larger of the size for the enabled features, EBX, and for all supported
// ones, ECX) and the length the kernel returns is the size used from then on.
//
// Intel AMX: restoring tile state needs the target to hold the permission
// (ARCH_REQ_XCOMP_PERM); a target that used AMX already has it, and we only
// ever write back what we read.
#ifndef PROCWARP_DAEMON_PTRACE_THREAD_STATE_H_
#define PROCWARP_DAEMON_PTRACE_THREAD_STATE_H_

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace procwarp::ptrace {

struct ThreadState {
  user_regs_struct regs{};
  std::vector<uint8_t> xstate;  // NT_X86_XSTATE, XStateSize() bytes
  uint64_t sigmask = 0;
};

// The CPU's XSAVE sizes from CPUID leaf 0xD sub-leaf 0: `enabled` (EBX, for
// the features in XCR0) and `supported` (ECX, for every supported feature),
// and XCR0 itself (XGETBV 0).
struct XSaveInfo {
  uint32_t enabled = 0;
  uint32_t supported = 0;
  uint64_t xcr0 = 0;
};
XSaveInfo CpuXSaveInfo();

// The size of the NT_X86_XSTATE regset as the kernel reports it, probed on
// `stopped_tid` (a tracee of the calling thread in a ptrace-stop) the first
// time and cached for the process.
absl::StatusOr<size_t> XStateSize(pid_t stopped_tid);

// Save / restore the whole ThreadState of a stopped tracee.
absl::StatusOr<ThreadState> SaveThreadState(pid_t tid);
absl::Status RestoreThreadState(pid_t tid, const ThreadState& state);

// Just the general registers (the hot path of injection).
absl::StatusOr<user_regs_struct> GetRegs(pid_t tid);
absl::Status SetRegs(pid_t tid, const user_regs_struct& regs);

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_THREAD_STATE_H_
