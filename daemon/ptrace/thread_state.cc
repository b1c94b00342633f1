// See thread_state.h.
#include "daemon/ptrace/thread_state.h"

#include <cpuid.h>
#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "daemon/ptrace/ptrace_call.h"
#include "daemon/util/status_macros.h"

namespace procwarp::ptrace {
namespace {

std::atomic<size_t> cached_xstate_size{0};

uint64_t ReadXcr0() {
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) return 0;
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

}  // namespace

XSaveInfo CpuXSaveInfo() {
  XSaveInfo info;
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) >= 0xD) {
    __cpuid_count(0xD, 0, eax, ebx, ecx, edx);
    info.enabled = ebx;
    info.supported = ecx;
  }
  info.xcr0 = ReadXcr0();
  return info;
}

absl::StatusOr<size_t> XStateSize(pid_t stopped_tid) {
  size_t size = cached_xstate_size.load(std::memory_order_relaxed);
  if (size != 0) return size;
  XSaveInfo cpu = CpuXSaveInfo();
  // The legacy FXSAVE area plus the XSAVE header is 576 bytes; a CPU without
  // leaf 0xD (none of ours) still gets a buffer the kernel can fill.
  size_t probe = std::max<size_t>({cpu.enabled, cpu.supported, 576}) + 4096;
  std::vector<uint8_t> buf(probe);
  struct iovec iov = {buf.data(), buf.size()};
  RETURN_IF_ERROR(Ptrace(PTRACE_GETREGSET, stopped_tid, NT_X86_XSTATE,
                         reinterpret_cast<unsigned long>(&iov)));
  if (iov.iov_len == 0 || iov.iov_len >= probe) {
    return absl::InternalError(absl::StrCat(
        "PTRACE_GETREGSET(NT_X86_XSTATE) returned ", iov.iov_len,
        " bytes for a ", probe, "-byte buffer; cannot size the XSAVE area"));
  }
  cached_xstate_size.store(iov.iov_len, std::memory_order_relaxed);
  return iov.iov_len;
}

absl::StatusOr<user_regs_struct> GetRegs(pid_t tid) {
  user_regs_struct regs;
  RETURN_IF_ERROR(
      Ptrace(PTRACE_GETREGS, tid, 0, reinterpret_cast<unsigned long>(&regs)));
  return regs;
}

absl::Status SetRegs(pid_t tid, const user_regs_struct& regs) {
  return Ptrace(PTRACE_SETREGS, tid, 0,
                reinterpret_cast<unsigned long>(&regs));
}

absl::StatusOr<ThreadState> SaveThreadState(pid_t tid) {
  ThreadState state;
  ASSIGN_OR_RETURN(state.regs, GetRegs(tid));
  ASSIGN_OR_RETURN(size_t size, XStateSize(tid));
  state.xstate.resize(size);
  struct iovec iov = {state.xstate.data(), state.xstate.size()};
  RETURN_IF_ERROR(Ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE,
                         reinterpret_cast<unsigned long>(&iov)));
  if (iov.iov_len != size) {
    // The kernel's size never changes while it runs; a different length
    // means our cache is wrong, and a truncated save must not be restored.
    return absl::InternalError(absl::StrCat(
        "PTRACE_GETREGSET(NT_X86_XSTATE, tid=", tid, ") returned ", iov.iov_len,
        " bytes, expected ", size));
  }
  RETURN_IF_ERROR(Ptrace(PTRACE_GETSIGMASK, tid, sizeof(state.sigmask),
                         reinterpret_cast<unsigned long>(&state.sigmask)));
  return state;
}

absl::Status RestoreThreadState(pid_t tid, const ThreadState& state) {
  RETURN_IF_ERROR(SetRegs(tid, state.regs));
  struct iovec iov = {const_cast<uint8_t*>(state.xstate.data()),
                      state.xstate.size()};
  RETURN_IF_ERROR(Ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE,
                         reinterpret_cast<unsigned long>(&iov)));
  return Ptrace(PTRACE_SETSIGMASK, tid, sizeof(state.sigmask),
                reinterpret_cast<unsigned long>(&state.sigmask));
}

}  // namespace procwarp::ptrace
