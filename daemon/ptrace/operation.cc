// See operation.h.
#include "daemon/ptrace/operation.h"

#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>

#include <algorithm>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/ptrace_call.h"
#include "daemon/util/status_macros.h"

namespace procwarp::ptrace {
namespace {

// Batches at least this long run with the tracer thread on the tracee's CPU.
constexpr size_t kSameCpuBatch = 16;

// The CPU `tid` of `pid` last ran on (field 39 of /proc/PID/task/TID/stat),
// or -1.
int LastCpu(pid_t pid, pid_t tid) {
  absl::StatusOr<std::string> stat =
      ReadProcFile(absl::StrCat("/proc/", pid, "/task/", tid, "/stat"));
  if (!stat.ok()) return -1;
  size_t paren = stat->rfind(')');
  if (paren == std::string::npos) return -1;
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(paren + 2), ' ');
  int cpu = -1;
  // Fields after "(comm)" start at field 3.
  if (fields.size() > 36 && absl::SimpleAtoi(fields[36], &cpu)) return cpu;
  return -1;
}

// Every injected syscall is one ptrace stop: the tracee runs, stops, the
// tracer runs. When the two sit on different CPUs each hand-over is a
// cross-CPU wake-up (2-3x slower on the VMs we run on). For the length of a
// batch the tracer thread (ours; the target's affinity is not touched) moves
// to the CPU the tracee last ran on, so the scheduler keeps them together.
class SameCpuAsTracee {
 public:
  SameCpuAsTracee(pid_t pid, pid_t tid) {
    int cpu = LastCpu(pid, tid);
    if (cpu < 0 || sched_getaffinity(0, sizeof(old_), &old_) != 0 ||
        !CPU_ISSET(cpu, &old_)) {
      return;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    moved_ = sched_setaffinity(0, sizeof(one), &one) == 0;
  }
  ~SameCpuAsTracee() {
    if (moved_) sched_setaffinity(0, sizeof(old_), &old_);
  }
  SameCpuAsTracee(const SameCpuAsTracee&) = delete;
  SameCpuAsTracee& operator=(const SameCpuAsTracee&) = delete;

 private:
  cpu_set_t old_;
  bool moved_ = false;
};

}  // namespace

Operation::Operation(Tracee& tracee, RemoteMemory& memory, int pidfd,
                     const SeizeOptions& seize_options,
                     uint64_t* syscall_insn_cache, const WaitControl& control)
    : tracee_(tracee),
      memory_(memory),
      pidfd_(pidfd),
      seize_options_(seize_options),
      syscall_insn_cache_(syscall_insn_cache),
      control_(control) {}

absl::StatusOr<const ThreadState*> Operation::SavedState() {
  if (!saved_.has_value()) {
    ASSIGN_OR_RETURN(ThreadState state, SaveThreadState(tracee_.tid()));
    saved_ = std::move(state);
  }
  return &*saved_;
}

absl::StatusOr<uint64_t> Operation::SyscallInstruction() {
  if (*syscall_insn_cache_ != 0 && !syscall_insn_checked_) {
    // The target may have unmapped what we found last time.
    if (!IsSyscallInstruction(memory_, *syscall_insn_cache_)) {
      *syscall_insn_cache_ = 0;
    }
    syscall_insn_checked_ = true;
  }
  if (*syscall_insn_cache_ == 0) {
    ASSIGN_OR_RETURN(*syscall_insn_cache_,
                     FindSyscallInstruction(pid(), memory_));
    syscall_insn_checked_ = true;
  }
  return *syscall_insn_cache_;
}

absl::StatusOr<SyscallResult> Operation::Syscall(
    long nr, std::initializer_list<uint64_t> args) {
  SyscallRequest request;
  request.nr = nr;
  if (args.size() > request.args.size()) {
    return absl::InvalidArgumentError("a syscall takes at most 6 arguments");
  }
  std::copy(args.begin(), args.end(), request.args.begin());
  std::vector<SyscallResult> results;
  RETURN_IF_ERROR(Syscalls(absl::MakeConstSpan(&request, 1), &results));
  return results.front();
}

absl::Status Operation::Syscalls(absl::Span<const SyscallRequest> requests,
                                 std::vector<SyscallResult>* results) {
  results->clear();
  results->reserve(requests.size());
  if (requests.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const ThreadState* saved, SavedState());
  ASSIGN_OR_RETURN(uint64_t insn, SyscallInstruction());
  std::optional<SameCpuAsTracee> same_cpu;
  if (requests.size() >= kSameCpuBatch) same_cpu.emplace(pid(), tid());
  for (const SyscallRequest& request : requests) {
    ASSIGN_OR_RETURN(SyscallResult result,
                     InjectSyscall(tracee_, saved->regs, insn, request, control_));
    results->push_back(result);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> Operation::StopOtherThreads() {
  std::set<pid_t> seen = {tid()};
  for (const auto& other : others_) seen.insert(other->tid());
  // Threads can be created until their creator is stopped: list again until
  // a listing shows no new thread.
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<pid_t> tids, ListThreads(pid()));
    bool found_new = false;
    for (pid_t t : tids) {
      if (!seen.insert(t).second) continue;
      found_new = true;
      absl::StatusOr<std::unique_ptr<Tracee>> other =
          Tracee::Seize(pidfd_, pid(), t, seize_options_);
      if (!other.ok()) {
        if (absl::IsNotFound(other.status())) continue;  // it exited
        return other.status();
      }
      absl::Status stopped = (*other)->StopForOperation(control_);
      if (!stopped.ok()) {
        if (!(*other)->attached()) continue;  // exited meanwhile
        return stopped;
      }
      others_.push_back(*std::move(other));
    }
    if (!found_new) break;
  }
  return others_.size();
}

absl::Status Operation::ResumeWithRegisters(const user_regs_struct& regs) {
  if (!saved_.has_value()) {
    return absl::FailedPreconditionError("ResumeWithRegisters before SavedState");
  }
  saved_->regs = regs;
  return absl::OkStatus();
}

absl::Status Operation::Finish(absl::Duration grace) {
  absl::Status result;
  if (saved_.has_value() && tracee_.attached()) {
    if (!tracee_.stopped()) {
      // Aborted while the tracee ran injected work: stop it first.
      WaitControl bounded;
      bounded.give_up = absl::Now() + grace;
      tracee_.ExpectStrayTrap();
      absl::Status st = Ptrace(PTRACE_INTERRUPT, tracee_.tid(), 0, 0);
      while (st.ok()) {
        absl::StatusOr<StopEvent> ev = tracee_.WaitStop(bounded);
        if (!ev.ok()) {
          st = ev.status();
          break;
        }
        if (ev->signal_delivery() && ev->sig != SIGTRAP) {
          st = tracee_.RememberCurrentSignal();
        }
        break;
      }
      if (!st.ok() && tracee_.attached()) {
        tracee_.SetPendingRestore(*std::move(saved_));
        saved_.reset();
        result = absl::DeadlineExceededError(absl::StrCat(
            "pid ", pid(), " did not stop within ", absl::FormatDuration(grace),
            " after the operation was cancelled; its registers are restored "
            "when it next stops"));
      }
    }
    if (saved_.has_value() && tracee_.attached()) {
      result.Update(RestoreThreadState(tracee_.tid(), *saved_));
    }
  }
  saved_.reset();
  WaitControl bounded;
  bounded.give_up = absl::Now() + grace;
  for (auto& other : others_) result.Update(other->Detach(bounded));
  others_.clear();
  return result;
}

}  // namespace procwarp::ptrace
