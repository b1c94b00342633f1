// See injector.h.
#include "daemon/ptrace/injector.h"

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1  // si_code of a seccomp SIGSYS (linux/signal.h)
#endif

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstddef>
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

// PTRACE_POKEUSER of register field `offset` when `want` differs from `have`.
absl::Status PokeIfChanged(pid_t tid, size_t offset, unsigned long long have,
                           unsigned long long want) {
  if (have == want) return absl::OkStatus();
  return Ptrace(PTRACE_POKEUSER, tid, offset, want);
}

// Writes the registers of `want` that an injected syscall reads and that
// differ from `have` (the registers as the previous syscall left them).
absl::Status WriteChangedRegisters(pid_t tid, const user_regs_struct& have,
                                   const user_regs_struct& want) {
#define PW_POKE(field)                                                       \
  RETURN_IF_ERROR(PokeIfChanged(tid, offsetof(user_regs_struct, field),      \
                                have.field, want.field))
  PW_POKE(rip);
  PW_POKE(rax);
  PW_POKE(orig_rax);
  PW_POKE(rdi);
  PW_POKE(rsi);
  PW_POKE(rdx);
  PW_POKE(r10);
  PW_POKE(r8);
  PW_POKE(r9);
#undef PW_POKE
  return absl::OkStatus();
}

// Syscalls that replace the caller's registers (the next injection must
// write them all).
bool ReplacesRegisters(long nr) {
  return nr == SYS_rt_sigreturn || nr == SYS_execve || nr == SYS_execveat;
}

// The general path of one injection after its step was started (or from
// event `first`): signals, seccomp traps, pending traps.
absl::StatusOr<SyscallResult> FinishInjection(
    Tracee& tracee, const user_regs_struct& regs, uint64_t insn,
    std::optional<StopEvent> first, const WaitControl& control);

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

absl::StatusOr<SyscallResult> InjectSyscall(
    Tracee& tracee, const user_regs_struct& base, uint64_t insn,
    const SyscallRequest& request, const WaitControl& control,
    std::optional<user_regs_struct>* known) {
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
  const bool incremental = known != nullptr && known->has_value();
  if (incremental) {
    RETURN_IF_ERROR(WriteChangedRegisters(tracee.tid(), **known, regs));
  } else {
    RETURN_IF_ERROR(SetRegs(tracee.tid(), regs));
  }
  if (known != nullptr) known->reset();
  RETURN_IF_ERROR(tracee.Resume(PTRACE_SINGLESTEP, 0));
  if (known != nullptr) {
    // The common case, read cheaply: the step's SIGTRAP right after the
    // instruction.
    ASSIGN_OR_RETURN(StopEvent ev, tracee.WaitStop(control));
    if (ev.signal_delivery() && ev.sig == SIGTRAP) {
      ASSIGN_OR_RETURN(unsigned long rip,
                       PtracePeek(PTRACE_PEEKUSER, tracee.tid(),
                                  offsetof(user_regs_struct, rip)));
      if (rip == insn + sizeof(kSyscallInsn)) {
        ASSIGN_OR_RETURN(unsigned long rax,
                         PtracePeek(PTRACE_PEEKUSER, tracee.tid(),
                                    offsetof(user_regs_struct, rax)));
        if (!ReplacesRegisters(request.nr)) {
          regs.rip = rip;
          regs.rax = rax;
          regs.orig_rax = static_cast<unsigned long long>(request.nr);
          *known = regs;
        }
        return SyscallResult{.value = static_cast<int64_t>(rax)};
      }
      // A trap pending from before the step: the instruction has not run.
      RETURN_IF_ERROR(tracee.Resume(PTRACE_SINGLESTEP, 0));
    } else {
      // Anything else: the general path below, from this event on.
      return FinishInjection(tracee, regs, insn, ev, control);
    }
  }
  return FinishInjection(tracee, regs, insn, std::nullopt, control);
}

namespace {

absl::StatusOr<SyscallResult> FinishInjection(
    Tracee& tracee, const user_regs_struct& regs, uint64_t insn,
    std::optional<StopEvent> first, const WaitControl& control) {
  SyscallResult result;
  for (;;) {
    StopEvent ev;
    if (first.has_value()) {
      ev = *first;
      first.reset();
    } else {
      ASSIGN_OR_RETURN(ev, tracee.WaitStop(control));
    }
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

}  // namespace

}  // namespace procwarp::ptrace
