// Operation: what a piece of work handed to a TracerThread gets while the
// target thread is stopped: the tracee, its memory, syscall injection (one or
// a batch, in this one stop), the saved thread state, and optionally every
// other thread of the process stopped too.
//
// State is saved lazily, once: the first injection saves the registers, the
// XSAVE area and the signal mask (thread_state.h); Finish() puts them back
// before the tracee is resumed, so any number of injected syscalls (or remote
// calls, daemon/exec/) cost one save and one restore. Finish() also runs when
// the work failed or was cancelled half-way: the target always gets its state
// back (immediately, or at its next stop when it did not stop in time).
#ifndef PROCWARP_DAEMON_PTRACE_OPERATION_H_
#define PROCWARP_DAEMON_PTRACE_OPERATION_H_

#include <sys/types.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "daemon/ptrace/injector.h"
#include "daemon/ptrace/remote_memory.h"
#include "daemon/ptrace/thread_state.h"
#include "daemon/ptrace/tracee.h"

namespace procwarp::ptrace {

class Operation {
 public:
  // Built by TracerThread around a tracee it just stopped.
  Operation(Tracee& tracee, RemoteMemory& memory, int pidfd,
            const SeizeOptions& seize_options, uint64_t* syscall_insn_cache,
            const WaitControl& control);
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

  pid_t pid() const { return tracee_.pid(); }
  pid_t tid() const { return tracee_.tid(); }
  Tracee& tracee() { return tracee_; }
  RemoteMemory& memory() { return memory_; }
  // Pass this to every wait: it ends when the caller's deadline passes.
  const WaitControl& control() const { return control_; }

  // The state the tracee had when it stopped, saved on first use and put
  // back by Finish(): call it before changing registers, XSAVE state or the
  // signal mask.
  absl::StatusOr<const ThreadState*> SavedState();

  // Makes Finish() resume the tracee with `regs` instead of its saved
  // registers (the XSAVE area and signal mask are still put back). For work
  // that hands the thread code which returns on its own
  // (daemon/python/trampoline.h). Call SavedState() first.
  absl::Status ResumeWithRegisters(const user_regs_struct& regs);

  // Injects one syscall (see injector.h). A failing syscall is a result
  // (value = -errno), not an error; errors mean the injection itself failed.
  absl::StatusOr<SyscallResult> Syscall(long nr,
                                        std::initializer_list<uint64_t> args = {});
  // Injects `requests` one after the other in this stop; results in order.
  absl::Status Syscalls(absl::Span<const SyscallRequest> requests,
                        std::vector<SyscallResult>* results);

  // Seizes and stops every other thread of the process (threads created
  // meanwhile included) until Finish(). Returns how many are stopped.
  absl::StatusOr<size_t> StopOtherThreads();

  // Restores the saved state (if any) and lets the other threads go. After
  // an abort the tracee may be running: it is interrupted and given until
  // `grace` to stop; if it does not, the restore happens at its next stop.
  absl::Status Finish(absl::Duration grace);

 private:
  absl::StatusOr<uint64_t> SyscallInstruction();

  Tracee& tracee_;
  RemoteMemory& memory_;
  int pidfd_;
  SeizeOptions seize_options_;
  uint64_t* syscall_insn_cache_;
  bool syscall_insn_checked_ = false;
  WaitControl control_;
  std::optional<ThreadState> saved_;
  std::vector<std::unique_ptr<Tracee>> others_;
};

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_OPERATION_H_
