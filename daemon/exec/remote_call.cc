// See remote_call.h.
#include "daemon/exec/remote_call.h"

#include <signal.h>
#include <sys/ptrace.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/ptrace/ptrace_call.h"
#include "daemon/ptrace/thread_state.h"
#include "daemon/util/status_macros.h"

namespace procwarp::exec {
namespace {

constexpr uint64_t kRedZone = 128;
constexpr uint64_t kGap = 256;  // extra room between the target's data and ours
constexpr unsigned long long kDirectionFlag = 0x400;
constexpr unsigned long long kTrapFlag = 0x100;

bool IsCrashSignal(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
         sig == SIGTRAP || sig == SIGSYS;
}

}  // namespace

absl::StatusOr<CallResult> CallFunction(ptrace::Operation& op, uint64_t function,
                                        absl::Span<const uint64_t> args) {
  if (args.size() > 6) {
    return absl::InvalidArgumentError("a remote call takes at most 6 arguments");
  }
  ASSIGN_OR_RETURN(const ptrace::ThreadState* saved, op.SavedState());
  user_regs_struct regs = saved->regs;
  uint64_t frame = ((regs.rsp - kRedZone - kGap) & ~uint64_t{15}) - 8;
  uint64_t old_word = 0;
  RETURN_IF_ERROR(op.memory().Read(
      frame, absl::MakeSpan(reinterpret_cast<uint8_t*>(&old_word), 8)));
  uint64_t trap = kReturnTrap;
  RETURN_IF_ERROR(op.memory().Write(
      frame, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&trap), 8)));
  unsigned long long* arg_regs[6] = {&regs.rdi, &regs.rsi, &regs.rdx,
                                     &regs.rcx, &regs.r8, &regs.r9};
  for (size_t i = 0; i < 6; ++i) *arg_regs[i] = i < args.size() ? args[i] : 0;
  regs.rip = function;
  regs.rsp = frame;
  regs.rax = 0;
  regs.orig_rax = static_cast<unsigned long long>(-1);
  regs.eflags &= ~(kDirectionFlag | kTrapFlag);
  RETURN_IF_ERROR(ptrace::SetRegs(op.tid(), regs));
  RETURN_IF_ERROR(op.tracee().Resume(PTRACE_CONT, 0));

  CallResult result;
  for (;;) {
    ASSIGN_OR_RETURN(ptrace::StopEvent ev, op.tracee().WaitStop(op.control()));
    if (!ev.signal_delivery()) {
      // A late interrupt stop or a group-stop: go on with the call.
      RETURN_IF_ERROR(op.tracee().Resume(PTRACE_CONT, 0));
      continue;
    }
    if (IsCrashSignal(ev.sig)) {
      siginfo_t info;
      RETURN_IF_ERROR(ptrace::Ptrace(PTRACE_GETSIGINFO, op.tid(), 0,
                                     reinterpret_cast<unsigned long>(&info)));
      if (info.si_code > 0) {  // raised by the kernel for this thread
        ASSIGN_OR_RETURN(user_regs_struct now, ptrace::GetRegs(op.tid()));
        if (ev.sig == SIGSEGV && now.rip == kReturnTrap && now.rsp == frame + 8) {
          result.value = now.rax;
        } else {
          result.signal = ev.sig;
          result.fault_address = reinterpret_cast<uint64_t>(info.si_addr);
          result.fault_rip = now.rip;
        }
        break;
      }
    }
    // Someone else's signal: deliver it after the call.
    RETURN_IF_ERROR(op.tracee().RememberCurrentSignal());
    RETURN_IF_ERROR(op.tracee().Resume(PTRACE_CONT, 0));
  }
  RETURN_IF_ERROR(op.memory().Write(
      frame, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&old_word), 8)));
  return result;
}

absl::StatusOr<CallResult> CallSymbol(ptrace::Operation& op,
                                      const SymbolResolver& symbols,
                                      absl::string_view symbol,
                                      absl::Span<const uint64_t> args,
                                      ResolvedSymbol* called) {
  ASSIGN_OR_RETURN(ResolvedSymbol resolved, symbols.Resolve(symbol));
  if (called != nullptr) *called = resolved;
  uint64_t address = resolved.address;
  if (resolved.ifunc) {
    ASSIGN_OR_RETURN(CallResult chosen, CallFunction(op, address, {}));
    if (chosen.crashed()) return chosen;
    address = chosen.value;
    if (called != nullptr) called->address = address;
  }
  return CallFunction(op, address, args);
}

}  // namespace procwarp::exec
