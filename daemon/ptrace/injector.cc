// See injector.h.
#include "daemon/ptrace/injector.h"

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1  // si_code of a seccomp SIGSYS (linux/signal.h)
#endif

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/ptrace_call.h"
#include "daemon/util/status_macros.h"

namespace procwarp::ptrace {
namespace {

constexpr uint8_t kSyscallInsn[2] = {0x0f, 0x05};
// Only the start of a large text mapping is scanned; one 0f 05 is enough.
constexpr size_t kMaxScan = 1 << 20;

absl::StatusOr<uint64_t> ScanMapping(const Mapping& m, RemoteMemory& memory) {
  size_t len = std::min<uint64_t>(m.end - m.start, kMaxScan);
  std::vector<uint8_t> text(len);
  RETURN_IF_ERROR(memory.Read(m.start, absl::MakeSpan(text)));
  for (size_t i = 0; i + 1 < len; ++i) {
    if (text[i] == kSyscallInsn[0] && text[i + 1] == kSyscallInsn[1]) {
      return m.start + i;
    }
  }
  return absl::NotFoundError("no syscall instruction");
}

}  // namespace

absl::StatusOr<uint64_t> FindSyscallInstruction(pid_t pid, RemoteMemory& memory) {
  ASSIGN_OR_RETURN(std::vector<Mapping> maps, ReadMaps(pid));
  auto rank = [](const Mapping& m) {
    if (m.path == "[vdso]") return 0;
    if (absl::StrContains(m.path, "/libc.so") || absl::StrContains(m.path, "/libc-")) return 1;
    if (!m.path.empty() && m.path[0] == '/') return 2;
    return 3;
  };
  for (int want = 0; want <= 2; ++want) {
    for (const Mapping& m : maps) {
      if (!m.exec || !m.read || rank(m) != want) continue;
      absl::StatusOr<uint64_t> at = ScanMapping(m, memory);
      if (at.ok()) return at;
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "pid ", pid, " has no syscall instruction (0f 05) in its vDSO or "
      "executable file mappings; procwarp does not write code into targets"));
}

bool IsSyscallInstruction(RemoteMemory& memory, uint64_t insn) {
  uint8_t bytes[2];
  if (!memory.Read(insn, absl::MakeSpan(bytes)).ok()) return false;
  return std::memcmp(bytes, kSyscallInsn, 2) == 0;
}

absl::StatusOr<SyscallResult> InjectSyscall(Tracee& tracee,
                                            const user_regs_struct& base,
                                            uint64_t insn,
                                            const SyscallRequest& request,
                                            const WaitControl& control) {
  user_regs_struct regs = base;
  regs.rip = insn;
  regs.rax = static_cast<unsigned long long>(request.nr);
  regs.orig_rax = static_cast<unsigned long long>(-1);
  regs.rdi = request.args[0];
  regs.rsi = request.args[1];
  regs.rdx = request.args[2];
  regs.r10 = request.args[3];
  regs.r8 = request.args[4];
  regs.r9 = request.args[5];
  RETURN_IF_ERROR(SetRegs(tracee.tid(), regs));
  RETURN_IF_ERROR(tracee.Resume(PTRACE_SINGLESTEP, 0));
  SyscallResult result;
  for (;;) {
    ASSIGN_OR_RETURN(StopEvent ev, tracee.WaitStop(control));
    if (ev.signal_delivery() && ev.sig == SIGTRAP) {
      ASSIGN_OR_RETURN(user_regs_struct after, GetRegs(tracee.tid()));
      if (after.rip == insn + sizeof(kSyscallInsn)) {
        if (!result.seccomp_refused) {
          result.value = static_cast<int64_t>(after.rax);
        }
        return result;
      }
      // A trap that was pending before the step ran (e.g. after a seccomp
      // SIGSYS below): the instruction has not executed yet.
      RETURN_IF_ERROR(tracee.Resume(PTRACE_SINGLESTEP, 0));
      continue;
    }
    if (ev.signal_delivery() && ev.sig == SIGSYS) {
      siginfo_t info;
      RETURN_IF_ERROR(Ptrace(PTRACE_GETSIGINFO, tracee.tid(), 0,
                             reinterpret_cast<unsigned long>(&info)));
      if (info.si_code == SYS_SECCOMP) {
        // The call was skipped. Suppress the SIGSYS; the step's own SIGTRAP
        // is still queued. Should it not be, the step runs a harmless
        // getpid at the same instruction instead of whatever follows it.
        if (!result.seccomp_refused) {
          result.seccomp_refused = true;
          result.value = -ENOSYS;
          user_regs_struct harmless = regs;
          harmless.rax = SYS_getpid;
          RETURN_IF_ERROR(SetRegs(tracee.tid(), harmless));
        }
        RETURN_IF_ERROR(tracee.Resume(PTRACE_SINGLESTEP, 0));
        continue;
      }
    }
    if (ev.signal_delivery()) {
      // Someone else's signal: keep it for the end of the operation.
      RETURN_IF_ERROR(tracee.RememberCurrentSignal());
    }
    // A late PTRACE_INTERRUPT stop or a group-stop (another thread took a
    // stop signal): step on.
    RETURN_IF_ERROR(tracee.Resume(PTRACE_SINGLESTEP, 0));
  }
}

}  // namespace procwarp::ptrace
