// See remote_exec.h.
#include "daemon/python/remote_exec.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/exec/fd_install.h"
#include "daemon/exec/remote_call.h"
#include "daemon/exec/transient_attach.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/thread_state.h"
#include "daemon/python/pypy.h"
#include "daemon/python/scratch_code.h"
#include "daemon/python/thread_survey.h"
#include "daemon/python/trampoline.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/pidfd.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::python {
namespace {

using Symbols = std::map<std::string, exec::SymbolResolver::SymbolRange, std::less<>>;

constexpr size_t kMaxThreads = 64;
constexpr size_t kMaxThreadsInMessage = 16;
// Stops of a busy main thread tried before giving up on finding it in the
// interpreter's own code (outside the pending-call and lock functions).
constexpr int kMaxStops = 200;
constexpr size_t kMaxResult = 6 * (kFieldLimit + 64) + 64;
constexpr absl::Duration kPoll = absl::Milliseconds(20);
// How often a queued pending call checks whether a blocked thread would run
// it sooner, and how often it may move.
constexpr absl::Duration kMoveCheck = absl::Milliseconds(50);
constexpr int kMaxRounds = 5;
// A busy PyPy target (no thread blocked in a system call) is watched this
// long for one to block before the exec is refused (pypy.h).
constexpr absl::Duration kPyPyBlockedWait = absl::Seconds(1);
constexpr absl::Duration kPyPySurveyPause = absl::Milliseconds(5);
constexpr size_t kPrologueBytes = 48;
// How long a finished exec waits for PyPy's new thread to end before
// leaving its scratch mapping in place (pypy.h).
constexpr absl::Duration kNewThreadExitWait = absl::Seconds(2);

constexpr absl::string_view kApi[] = {
    "PyGILState_Ensure", "PyGILState_Release", "PyGILState_Check",
    "PyGILState_GetThisThreadState", "PyRun_SimpleString", "Py_AddPendingCall",
    // PyPy (pypy.h): its embedding entry point and GIL check.
    "pypy_execute_source", "PyPyGILState_Check", "pypy_thread_attach",
    "pypy_init_embedded_cffi_module", "pypy_carefully_make_gil"};

// Functions a thread must not be stopped in when Py_AddPendingCall is
// injected on it: the pending-call queue's own code (its lock is not
// reentrant) and the locks and GIL code it uses. Statics are only known from
// .symtab; 3.13's PyMutex-based queue needs them (see RipSafeForPendingCall).
constexpr absl::string_view kNotHere[] = {
    "Py_AddPendingCall", "_PyEval_AddPendingCall", "make_pending_calls",
    "_make_pending_calls", "Py_MakePendingCalls", "_PyEval_MakePendingCalls",
    "_Py_FinishPendingCalls", "_push_pending_call", "_pop_pending_call",
    "_Py_HandlePending", "handle_signals", "PyThread_acquire_lock",
    "PyThread_acquire_lock_timed", "PyThread_release_lock", "_PyMutex_LockTimed",
    "_PyMutex_LockSlow", "PyMutex_Lock", "PyMutex_Unlock", "_PyMutex_TryUnlock",
    "_PyParkingLot_Park", "_PyParkingLot_Unpark", "_PyParkingLot_UnparkAll",
    "_PySemaphore_Wait", "_PySemaphore_Wakeup", "take_gil", "drop_gil",
    "PyEval_RestoreThread", "PyEval_SaveThread"};

// kNewThread: PyPy only, a thread started for the code (pypy.h).
enum class SafePoint { kNone, kBlocked, kPending, kNewThread };

// What the attached work leaves for the rest of the exec.
struct Placement {
  SafePoint point = SafePoint::kNone;
  pid_t tid = 0;
  uint64_t mapping = 0;
  uint64_t mapping_size = 0;
  uint64_t source = 0;
  uint64_t code_page = 0;  // blocked: the trampoline's code
  uint64_t data = 0;       // blocked: its data block
};

// Scratch mappings an exec had to leave in its target (withdrawn, timed out,
// cancelled, --no-wait, moved to a blocked thread, or its trampoline thread
// not yet off the code page): the queued call may still read its source, and
// a trampoline may still run. Each keeps the read end of its result pipe:
// the bootstrap closes the write end when it is done (having run the code or
// found it withdrawn), so EOF says the mapping is no longer used. The next
// exec into the same target frees those (docs/python.md, "Memory left
// behind"); a target with kMaxLeftoversPerTarget outstanding is refused
// further execs until its queued calls have run.
struct Leftover {
  pid_t pid = 0;
  UniqueFd pidfd;     // the process (a recycled pid is not it)
  UniqueFd finished;  // result pipe read end, non-blocking: EOF = done with it
  Placement placed;
};

constexpr size_t kMaxLeftoversPerTarget = 16;
// Daemon-wide (two fds each); beyond it a leftover is not tracked and stays
// in its target as before, which the log says.
constexpr size_t kMaxLeftovers = 512;

class Leftovers {
 public:
  static Leftovers& Get() {
    static Leftovers* ledger = new Leftovers;
    return *ledger;
  }

  void Add(Leftover leftover) {
    absl::MutexLock lock(&mu_);
    DropExited();
    if (items_.size() >= kMaxLeftovers) {
      LogError(absl::StrCat("remote exec: ", items_.size(),
                            " scratch mappings are tracked already; the one left in pid ",
                            leftover.pid, " stays untracked"));
      return;
    }
    items_.push_back(std::move(leftover));
  }

  // Takes out the leftovers of `pid` whose bootstrap is done with them.
  std::vector<Leftover> TakeFinished(pid_t pid) {
    absl::MutexLock lock(&mu_);
    DropExited();
    std::vector<Leftover> out;
    for (auto it = items_.begin(); it != items_.end();) {
      if (it->pid == pid && Finished(it->finished.get())) {
        out.push_back(std::move(*it));
        it = items_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  size_t Outstanding(pid_t pid) {
    absl::MutexLock lock(&mu_);
    DropExited();
    return std::count_if(items_.begin(), items_.end(),
                         [pid](const Leftover& l) { return l.pid == pid; });
  }

 private:
  // Drains what the bootstrap wrote (nobody reads it any more); true on EOF.
  static bool Finished(int fd) {
    char buf[4096];
    for (;;) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n > 0 || (n < 0 && errno == EINTR)) continue;
      return n == 0;  // EAGAIN: the target still holds the write end
    }
  }
  // The mappings of exited processes went with them.
  void DropExited() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::erase_if(items_, [](const Leftover& l) { return PidfdExited(l.pidfd.get()); });
  }

  absl::Mutex mu_;
  std::vector<Leftover> items_ ABSL_GUARDED_BY(mu_);
};

std::vector<absl::string_view> WantedSymbols() {
  std::vector<absl::string_view> names(std::begin(kApi), std::end(kApi));
  names.insert(names.end(), std::begin(kNotHere), std::end(kNotHere));
  return names;
}

bool IsPyPy(const Interpreter& interp) {
  return interp.implementation == Implementation::kPyPy;
}

absl::Status Unsupported(const Interpreter& interp) {
  if (IsPyPy(interp)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "found ", interp.Describe(), ": remote exec supports PyPy 3.8 and newer "
        "(sys.audit, pypy_execute_source)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "found ", interp.Describe(), ": remote exec needs CPython 3.8 to 3.13 "
      "(sys.audit and the pending-call API)"));
}

bool IsSupported(const Interpreter& interp) {
  if (IsPyPy(interp)) return interp.major == 3 && interp.minor >= 8;
  return interp.IsCPythonAtLeast(3, 8) && !interp.IsCPythonAtLeast(3, 14);
}

absl::Status BusyPyPy(pid_t pid, const Interpreter& interp, bool main_only,
                      const std::string& threads) {
  return absl::FailedPreconditionError(absl::StrCat(
      "pid ", pid, " runs ", interp.Describe(), " and ",
      main_only ? "its main thread (--main-thread) is not" : "none of its threads is",
      " blocked in a system call: a PyPy thread runs the code only while it waits in one "
      "(sleep, I/O, select) with the GIL released; a busy one gets a new thread instead, "
      "which --main-thread rules out (docs/python.md, \"PyPy\"). Threads: ",
      threads));
}

// Where rip lies must be the interpreter's code, outside kNotHere.
bool RipSafeForPendingCall(uint64_t rip, const Interpreter& interp, const Symbols& syms,
                           const std::vector<ptrace::Mapping>& maps) {
  bool in_interpreter = false;
  for (const ptrace::Mapping& m : maps) {
    if (rip >= m.start && rip < m.end) in_interpreter = m.path == interp.object.path;
  }
  if (!in_interpreter) return false;
  for (absl::string_view name : kNotHere) {
    auto it = syms.find(name);
    if (it != syms.end() && (it->second.contains(rip) || it->second.size == 0)) {
      if (it->second.contains(rip)) return false;
    }
  }
  return true;
}

absl::StatusOr<uint64_t> Address(const Symbols& syms, absl::string_view name,
                                 const Interpreter& interp) {
  auto it = syms.find(name);
  if (it == syms.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(interp.Describe(), " does not define ", name));
  }
  return it->second.address;
}

absl::StatusOr<uint64_t> CallValue(ptrace::Operation& op, uint64_t fn,
                                   absl::Span<const uint64_t> args, absl::string_view what) {
  ASSIGN_OR_RETURN(exec::CallResult r, exec::CallFunction(op, fn, args));
  if (r.crashed()) {
    return absl::InternalError(absl::StrCat(what, " crashed in the target with signal ",
                                            r.signal, " (the target was put back)"));
  }
  return r.value;
}

// The stopped thread of `op` is in a call the trampoline may interrupt, and
// the interpreter says it is a Python thread not holding the GIL.
absl::StatusOr<bool> BlockedWithGilReleased(ptrace::Operation& op,
                                            const user_regs_struct& regs,
                                            const Symbols& syms,
                                            const Interpreter& interp) {
  if (!InRestartableSyscall(regs) ||
      !IsSafeBlockingSyscall(static_cast<long>(regs.orig_rax))) {
    return false;
  }
  uint8_t insn[2] = {};
  if (!op.memory().Read(regs.rip - 2, absl::MakeSpan(insn, 2)).ok() ||
      insn[0] != 0x0f || insn[1] != 0x05) {
    return false;  // not at a plain `syscall` instruction (vsyscall, int 0x80)
  }
  if (IsPyPy(interp)) {
    // pypy.h: PyPy must know the thread, and it must not hold the GIL.
    ASSIGN_OR_RETURN(uint64_t check, Address(syms, "PyPyGILState_Check", interp));
    uint8_t prologue[kPrologueBytes] = {};
    RETURN_IF_ERROR(op.memory().Read(check, absl::MakeSpan(prologue)));
    std::optional<uint64_t> tls_index = pypy::TlsIndexAddress(check, prologue);
    if (!tls_index.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(
          interp.Describe(), ": PyPyGILState_Check does not start as PyPy 7.3 builds do "
          "(no TLS access sequence), so procwarp cannot tell which threads PyPy knows"));
    }
    ASSIGN_OR_RETURN(bool known, pypy::ThreadKnownToPyPy(op.memory(), *tls_index, regs.fs_base));
    if (!known) return false;  // a thread PyPy did not start (a C library's)
    ASSIGN_OR_RETURN(uint64_t holds, CallValue(op, check, {}, "PyPyGILState_Check"));
    return static_cast<int>(holds) == 0;
  }
  ASSIGN_OR_RETURN(uint64_t this_state, Address(syms, "PyGILState_GetThisThreadState", interp));
  ASSIGN_OR_RETURN(uint64_t check, Address(syms, "PyGILState_Check", interp));
  ASSIGN_OR_RETURN(uint64_t tstate, CallValue(op, this_state, {}, "PyGILState_GetThisThreadState"));
  if (tstate == 0) return false;  // not a Python thread
  ASSIGN_OR_RETURN(uint64_t holds, CallValue(op, check, {}, "PyGILState_Check"));
  return static_cast<int>(holds) == 0;
}

absl::StatusOr<uint64_t> Mmap(ptrace::Operation& op, uint64_t size) {
  ASSIGN_OR_RETURN(ptrace::SyscallResult r,
                   op.Syscall(SYS_mmap, {0, size, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0}));
  if (static_cast<long>(r.value) < 0 && static_cast<long>(r.value) > -4096) {
    return absl::ResourceExhaustedError(
        absl::StrCat("mmap(", size, ") in the target failed: ", strerror(-static_cast<int>(r.value))));
  }
  return r.value;
}

void Munmap(ptrace::Operation& op, uint64_t addr, uint64_t size) {
  (void)op.Syscall(SYS_munmap, {addr, size});
}

enum class ReadEnd { kEof, kDeadline, kCancelled, kMoveToBlocked };

// Reads the result fd until EOF, the deadline or cancellation; at most
// kMaxResult bytes are kept (the rest is drained and dropped, so the target
// never blocks on a full pipe). While nothing has come, `move` is asked
// every kMoveCheck whether to stop waiting (kMoveToBlocked).
ReadEnd ReadUntilEof(int fd, absl::Time deadline, const std::function<bool()>& cancelled,
                     const std::function<bool()>& move, std::string* data) {
  char buf[65536];
  absl::Time next_check = absl::Now() + kMoveCheck;
  for (;;) {
    if (cancelled()) return ReadEnd::kCancelled;
    const absl::Time now = absl::Now();
    const absl::Duration left = deadline - now;
    if (left <= absl::ZeroDuration()) return ReadEnd::kDeadline;
    if (data->empty() && now >= next_check) {
      if (move()) return ReadEnd::kMoveToBlocked;
      next_check = now + kMoveCheck;
    }
    struct pollfd p = {fd, POLLIN, 0};
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(std::min(left, kPoll))) + 1;
    int r = poll(&p, 1, wait_ms);
    if (r < 0 && errno != EINTR) return ReadEnd::kEof;
    if (r <= 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0) return ReadEnd::kEof;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return ReadEnd::kEof;
    }
    if (data->size() < kMaxResult) {
      data->append(buf, std::min(static_cast<size_t>(n), kMaxResult - data->size()));
    }
  }
}

// Takes the run token back (bootstrap.h): true when the daemon got it, so
// the bootstrap will do nothing whenever it comes up.
bool TakeToken(int token_fd) {
  char c = 0;
  return token_fd >= 0 && read(token_fd, &c, 1) == 1;
}

bool ProcessGone(int pidfd, absl::Duration wait) {
  struct pollfd p = {pidfd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(wait))) == 1;
}

struct Candidate {
  pid_t tid = 0;
  bool blocked = false;  // in a safe blocking call: may get the trampoline
};

// The threads to stop, in the order tried (round robin over the stops):
// blocked ones first (only the main thread with main_only), then the main
// thread, then the others — any thread may queue a pending call, which the
// main thread runs.
std::vector<Candidate> Candidates(pid_t pid, const std::vector<ThreadPlace>& places,
                                  bool main_only) {
  std::vector<Candidate> out;
  bool main_listed = false;
  for (const ThreadPlace& p : places) {
    if (main_only && p.tid != pid) continue;
    if (!p.running && IsSafeBlockingSyscall(p.syscall)) {
      out.push_back({p.tid, true});
      main_listed |= p.tid == pid;
    }
  }
  if (!main_listed) out.push_back({pid, false});
  for (const ThreadPlace& p : places) {
    if (p.tid == pid || (!p.running && IsSafeBlockingSyscall(p.syscall))) continue;
    out.push_back({p.tid, false});
  }
  return out;
}

}  // namespace

// What placing the code learns once and keeps across stops and rounds.
struct PlaceState {
  std::optional<exec::SymbolResolver> symbols;
  Symbols syms;
  bool opt_out_checked = false;
};

// Stops threads (Candidates, round robin) until one is a safe point, and
// queues or starts the bootstrap there with copies of `result_fd` and
// `token_fd` (-1: none) installed in the target.
absl::Status Place(const Identity& caller, const RemoteExecRequest& request, PlaceState& st,
                   int result_fd, int token_fd, Placement& placed,
                   RemoteExecResult* result) {
  const pid_t pid = request.pid;
  std::optional<absl::Time> pypy_busy_since;
  int stop = 0;
  for (int turn = 0; placed.point == SafePoint::kNone; ++turn) {
    if (stop >= kMaxStops) {
      return absl::DeadlineExceededError(absl::StrCat(
          "pid ", pid, ": found no safe point to queue the code after ", kMaxStops,
          " stops: ", DescribeThreads(pid, st.symbols ? &*st.symbols : nullptr,
                                      kMaxThreadsInMessage)));
    }
    if (request.cancelled()) return absl::CancelledError("the call was cancelled");
    if (absl::Now() >= request.deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "pid ", pid, ": the deadline passed before the code could be queued: ",
          DescribeThreads(pid, st.symbols ? &*st.symbols : nullptr, kMaxThreadsInMessage)));
    }
    ASSIGN_OR_RETURN(std::vector<ThreadPlace> places, SurveyThreads(pid, kMaxThreads));
    std::vector<Candidate> candidates = Candidates(pid, places, request.main_thread_only);
    if (st.symbols.has_value() && IsPyPy(result->interpreter)) {
      // PyPy (pypy.h): a blocked thread runs the code at once; without one,
      // a busy thread starts a new thread for it — unless the main thread
      // must run it: then watch for it to block a little while, then refuse.
      const bool any_blocked =
          std::any_of(candidates.begin(), candidates.end(),
                      [](const Candidate& c) { return c.blocked; });
      if (any_blocked || request.main_thread_only) {
        std::erase_if(candidates, [](const Candidate& c) { return !c.blocked; });
      }
      if (candidates.empty()) {
        const absl::Time now = absl::Now();
        if (!pypy_busy_since.has_value()) pypy_busy_since = now;
        if (now - *pypy_busy_since >= kPyPyBlockedWait) {
          return BusyPyPy(pid, result->interpreter, request.main_thread_only,
                          DescribeThreads(pid, &*st.symbols, kMaxThreadsInMessage));
        }
        absl::SleepFor(kPyPySurveyPause);
        continue;
      }
    }
    const pid_t tid = candidates[turn % candidates.size()].tid;
    const bool blocked_candidate = candidates[turn % candidates.size()].blocked;
    ++stop;
    ASSIGN_OR_RETURN(UniqueFd pidfd, exec::OpenPidfd(pid));
    UniqueFd kept(fcntl(pidfd.get(), F_DUPFD_CLOEXEC, 0));
    if (!kept) return ErrnoStatus(errno, "dup(pidfd)");
    absl::Status attached = exec::RunAttached(
        caller, pid, std::move(pidfd), {.tid = tid}, request.deadline, request.cancelled,
        [&](ptrace::Operation& op) -> absl::Status {
          if (!st.symbols.has_value()) {
            ASSIGN_OR_RETURN(exec::SymbolResolver s,
                             exec::SymbolResolver::ForProcess(pid, &op.memory()));
            st.symbols = std::move(s);
            ASSIGN_OR_RETURN(result->interpreter, FindInterpreter(*st.symbols, op.memory()));
            result->interpreter_found = true;
            if (!IsSupported(result->interpreter)) return Unsupported(result->interpreter);
            ASSIGN_OR_RETURN(st.syms, st.symbols->LookupSymbols(result->interpreter.object,
                                                          WantedSymbols()));
            if (result->interpreter.IsCPythonAtLeast(3, 13) &&
                st.syms.count("_make_pending_calls") == 0) {
              // Without its static functions the PyMutex-based queue cannot
              // be avoided safely (remote_exec.h): only "blocked" would do.
              st.syms.erase("Py_AddPendingCall");
            }
          }
          if (!st.opt_out_checked) {
            OptOut opt_out = ReadOptOut(pid);
            if (opt_out.opted_out) {
              if (!request.override_opt_out) {
                return absl::FailedPreconditionError(absl::StrCat(
                    "pid ", pid, " opted out of remote debugging (", opt_out.evidence,
                    "); an admin may override it (--override-opt-out)"));
              }
              result->opt_out_overridden = true;
            }
            st.opt_out_checked = true;
          }
          const Interpreter& interp = result->interpreter;
          ASSIGN_OR_RETURN(const ptrace::ThreadState* saved, op.SavedState());
          const user_regs_struct regs = saved->regs;
          SafePoint point = SafePoint::kNone;
          if (blocked_candidate && !InRestartableSyscall(regs)) {
            // Caught between two calls (a restart on its way): its next stop
            // will be inside one again.
            return absl::OkStatus();
          }
          if (blocked_candidate) {
            ASSIGN_OR_RETURN(bool ok, BlockedWithGilReleased(op, regs, st.syms, interp));
            if (ok) point = SafePoint::kBlocked;
          }
          if (point == SafePoint::kNone && st.syms.count("Py_AddPendingCall") != 0) {
            // A thread blocked in a safe call holds no interpreter lock; the
            // main thread must be seen in the interpreter's own code.
            const bool quiet = InRestartableSyscall(regs) &&
                               IsSafeBlockingSyscall(static_cast<long>(regs.orig_rax));
            ASSIGN_OR_RETURN(std::vector<ptrace::Mapping> maps, ptrace::ReadMaps(pid));
            if (quiet || RipSafeForPendingCall(regs.rip, interp, st.syms, maps)) {
              point = SafePoint::kPending;
            }
          }
          if (point == SafePoint::kNone && IsPyPy(interp) && !blocked_candidate &&
              !request.main_thread_only) {
            ASSIGN_OR_RETURN(std::vector<ptrace::Mapping> maps, ptrace::ReadMaps(pid));
            if (pypy::SafeToSpawnFrom(regs, maps, interp.object.path)) {
              point = SafePoint::kNewThread;
            }
          }
          if (point == SafePoint::kNone) {
            if (st.syms.count("Py_AddPendingCall") == 0 && !blocked_candidate &&
                !IsPyPy(interp)) {
              return absl::FailedPreconditionError(absl::StrCat(
                  interp.Describe(), " has no symbol table for its pending-call code, so "
                  "only a thread blocked in a system call can run the code; none is: ",
                  DescribeThreads(pid, &*st.symbols, kMaxThreadsInMessage)));
            }
            return absl::OkStatus();  // not here: stop it again elsewhere
          }
          // PyPy runs the source through its embedding entry point, which
          // takes the GIL itself (pypy.h); CPython through PyRun_SimpleString
          // between PyGILState_Ensure/Release (trampoline.h) or as a pending call.
          ASSIGN_OR_RETURN(uint64_t run, Address(st.syms,
                                                 IsPyPy(interp) ? "pypy_execute_source"
                                                                : "PyRun_SimpleString",
                                                 interp));
          int target_fd = -1;
          int target_token = -1;
          auto undo_fd = [&] {
            if (target_fd >= 0) (void)exec::CloseTargetFd(op, target_fd);
            if (target_token >= 0) (void)exec::CloseTargetFd(op, target_token);
          };
          if (result_fd >= 0) {
            ASSIGN_OR_RETURN(target_fd, exec::InstallFd(op, kept.get(), result_fd));
          }
          if (token_fd >= 0) {  // not for --no-wait: nothing to withdraw
            absl::StatusOr<int> token = exec::InstallFd(op, kept.get(), token_fd);
            if (!token.ok()) {
              undo_fd();
              return token.status();
            }
            target_token = *token;
          }
          const bool new_thread = point == SafePoint::kNewThread;
          const std::string source = absl::StrCat(
              BuildBootstrap(request.code, request.eval, target_fd, target_token, kFieldLimit,
                             IsPyPy(interp) && !new_thread),
              new_thread ? pypy::SpawnBootstrapCleanup() : "");
          const size_t xsave_size = ptrace::CpuXSaveInfo().enabled;
          const uint64_t size = new_thread ? pypy::SpawnMappingSize(source.size())
                                : point == SafePoint::kBlocked
                                    ? TrampolineSize(source.size(), xsave_size)
                                    : (source.size() + kPage) & ~(kPage - 1);
          absl::StatusOr<uint64_t> base = Mmap(op, size);
          if (!base.ok()) {
            undo_fd();
            return base.status();
          }
          placed.mapping = *base;
          placed.mapping_size = size;
          placed.tid = op.tid();
          absl::Status done = [&]() -> absl::Status {
            if (new_thread) {
              ASSIGN_OR_RETURN(uint64_t attach, Address(st.syms, "pypy_thread_attach", interp));
              ASSIGN_OR_RETURN(uint64_t init,
                               Address(st.syms, "pypy_init_embedded_cffi_module", interp));
              ASSIGN_OR_RETURN(uint64_t make_gil,
                               Address(st.syms, "pypy_carefully_make_gil", interp));
              placed.data = *base + kPage;
              return pypy::StartExecThread(op, *st.symbols, *base, attach, init, make_gil,
                                           source);
            }
            if (point == SafePoint::kBlocked) {
              TrampolineLayout layout = LayoutTrampoline(*base, source.size(), xsave_size);
              uint64_t ensure = 0;
              uint64_t release = 0;
              const TrampolineEntryCalls calls = IsPyPy(interp)
                                                     ? TrampolineEntryCalls::kRunOnly
                                                     : TrampolineEntryCalls::kGilStateAroundRun;
              if (calls == TrampolineEntryCalls::kGilStateAroundRun) {
                ASSIGN_OR_RETURN(ensure, Address(st.syms, "PyGILState_Ensure", interp));
                ASSIGN_OR_RETURN(release, Address(st.syms, "PyGILState_Release", interp));
              }
              ASSIGN_OR_RETURN(std::string header,
                               TrampolineHeader(ensure, run, release, regs));
              RETURN_IF_ERROR(WriteBytes(op, layout.data, header));
              RETURN_IF_ERROR(WriteBytes(op, layout.source, absl::string_view(source.c_str(), source.size() + 1)));
              RETURN_IF_ERROR(WriteBytes(op, layout.base, TrampolineCode(layout, calls)));
              RETURN_IF_ERROR(SealCode(op, layout.base, kPage));
              placed.source = layout.source;
              placed.code_page = layout.base;
              placed.data = layout.data;
              return op.ResumeWithRegisters(TrampolineEntry(layout, regs));
            }
            RETURN_IF_ERROR(WriteBytes(op, *base, absl::string_view(source.c_str(), source.size() + 1)));
            placed.source = *base;
            ASSIGN_OR_RETURN(uint64_t add, Address(st.syms, "Py_AddPendingCall", interp));
            ASSIGN_OR_RETURN(uint64_t queued, CallValue(op, add, {run, *base}, "Py_AddPendingCall"));
            if (static_cast<int>(queued) != 0) {
              return absl::UnavailableError(absl::StrCat(
                  "pid ", pid, ": the interpreter's pending-call queue is full; try again"));
            }
            return absl::OkStatus();
          }();
          if (!done.ok()) {
            Munmap(op, *base, size);
            undo_fd();
            placed = Placement{};
            return done;
          }
          placed.point = point;
          return absl::OkStatus();
        });
    RETURN_IF_ERROR(attached);
    if (placed.point == SafePoint::kNone) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return absl::OkStatus();
}

// Unmaps an exec's scratch mapping, once its trampoline's thread (if any)
// has left the code page (it sets `done` a few instructions before); a few
// tries. `pidfd` is the exec's target. False when it is still mapped.
bool FreeScratch(const Identity& caller, pid_t pid, int pidfd, const Placement& placed,
                 const std::function<bool()>& cancelled) {
  const bool new_thread = placed.point == SafePoint::kNewThread;
  pid_t started = 0;
  if (new_thread &&
      !pypy::AwaitExecThreadExit(pid, placed.mapping, kNewThreadExitWait, &started)) {
    return false;  // the thread started for the code may still run its stub
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    UniqueFd attach_fd(fcntl(pidfd, F_DUPFD_CLOEXEC, 0));
    if (!attach_fd) break;
    // A thread that has exited runs no trampoline any more: the pages go
    // from the main thread then (as for PyPy's ended new thread).
    const bool thread_gone =
        new_thread ||
        access(absl::StrCat("/proc/", pid, "/task/", placed.tid).c_str(), F_OK) != 0;
    bool unmapped = false;
    absl::Status cleaned = exec::RunAttached(
        caller, pid, std::move(attach_fd), {.tid = thread_gone ? 0 : placed.tid},
        absl::Now() + absl::Seconds(2), cancelled,
        [&](ptrace::Operation& op) -> absl::Status {
          if (placed.point == SafePoint::kBlocked && !thread_gone) {
            uint64_t done = 0;
            RETURN_IF_ERROR(op.memory().Read(
                placed.data + TrampolineData::kDone,
                absl::MakeSpan(reinterpret_cast<uint8_t*>(&done), 8)));
            ASSIGN_OR_RETURN(const ptrace::ThreadState* s, op.SavedState());
            if (done != 1 || (s->regs.rip >= placed.code_page &&
                              s->regs.rip < placed.code_page + kPage)) {
              return absl::OkStatus();
            }
          }
          Munmap(op, placed.mapping, placed.mapping_size);
          unmapped = true;
          return absl::OkStatus();
        });
    if (unmapped) return true;
    if (!cleaned.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// Hands a mapping the target may still use to the ledger (Leftovers).
void KeepLeftover(pid_t pid, UniqueFd result_read_end, const Placement& placed) {
  if (placed.mapping == 0 || !result_read_end) return;
  absl::StatusOr<UniqueFd> pidfd = exec::OpenPidfd(pid);
  if (!pidfd.ok()) return;  // gone, and its memory with it
  if (fcntl(result_read_end.get(), F_SETFL, O_NONBLOCK) != 0) return;
  Leftovers::Get().Add(Leftover{pid, *std::move(pidfd), std::move(result_read_end), placed});
}

// Frees the scratch mappings earlier execs left in `pid` (behind `pidfd`)
// whose bootstrap has finished with them; then refuses the exec if too many
// are still queued (only a caller who may ptrace the target learns that).
absl::Status FreeLeftovers(const Identity& caller, pid_t pid, int pidfd,
                           const std::function<bool()>& cancelled) {
  for (Leftover& leftover : Leftovers::Get().TakeFinished(pid)) {
    if (!FreeScratch(caller, pid, leftover.pidfd.get(), leftover.placed, cancelled)) {
      Leftovers::Get().Add(std::move(leftover));  // try again next time
    }
  }
  const size_t outstanding = Leftovers::Get().Outstanding(pid);
  if (outstanding >= kMaxLeftoversPerTarget) {
    RETURN_IF_ERROR(CheckCallerMayPtrace(caller, pid, pidfd, absl::StrCat("pid ", pid)));
    return absl::ResourceExhaustedError(absl::StrCat(
        "pid ", pid, " still has ", outstanding, " earlier execs queued that have not run "
        "(withdrawn, timed out or --no-wait; its main thread has not reached a bytecode "
        "boundary since); their memory stays until they run. Retry once it is responsive"));
  }
  return absl::OkStatus();
}

absl::Status RunPython(const Identity& caller, const RemoteExecRequest& request,
                       RemoteExecResult* result) {
  const pid_t pid = request.pid;
  ASSIGN_OR_RETURN(UniqueFd watch, exec::OpenPidfd(pid));
  RETURN_IF_ERROR(FreeLeftovers(caller, pid, watch.get(), request.cancelled));
  PlaceState st;
  Placement placed;
  UniqueFd read_end;
  UniqueFd token;  // the daemon's read end of the token pipe
  std::string data;
  for (int round = 0;; ++round) {
    UniqueFd write_end;
    int fds[2] = {-1, -1};
    // --no-wait gets a result pipe too, only for its EOF (Leftovers):
    // non-blocking, so that the record, which nobody reads, never blocks the
    // target (the bootstrap stops sending on EAGAIN).
    if (pipe2(fds, O_CLOEXEC | (request.no_wait ? O_NONBLOCK : 0)) != 0) {
      return ErrnoStatus(errno, "pipe2");
    }
    read_end.Reset(fds[0]);
    write_end.Reset(fds[1]);
    if (!request.no_wait) {
      if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoStatus(errno, "pipe2");
      token.Reset(fds[0]);
      UniqueFd token_write(fds[1]);
      if (write(token_write.get(), "G", 1) != 1) return ErrnoStatus(errno, "write(token)");
    }
    placed = Placement{};
    RETURN_IF_ERROR(Place(caller, request, st, write_end.get(), token.get(), placed, result));
    write_end.Reset();  // EOF comes when the target closes its copy
    result->safe_point = placed.point == SafePoint::kBlocked     ? "blocked"
                         : placed.point == SafePoint::kNewThread ? "new-thread"
                                                                 : "pending";
    result->ran_on_tid = placed.point == SafePoint::kBlocked ? placed.tid : pid;
    result->ran_on_main_thread = result->ran_on_tid == pid;
    if (request.no_wait) {
      result->queued = true;
      KeepLeftover(pid, std::move(read_end), placed);
      return absl::OkStatus();
    }
    // A pending call waits for the main thread's next bytecode; if by now a
    // thread sits in a blocking call instead (the main thread went on into
    // a read, say), take the code back and start it there.
    auto move_to_blocked = [&] {
      if (placed.point != SafePoint::kPending || round >= kMaxRounds) return false;
      absl::StatusOr<std::vector<ThreadPlace>> places = SurveyThreads(pid, kMaxThreads);
      return places.ok() && Candidates(pid, *places, request.main_thread_only)[0].blocked;
    };
    data.clear();
    const ReadEnd end = ReadUntilEof(read_end.get(), request.deadline, request.cancelled,
                                     move_to_blocked, &data);
    if (end == ReadEnd::kMoveToBlocked) {
      if (TakeToken(token.get())) {  // withdrawn: place it again
        KeepLeftover(pid, std::move(read_end), placed);
        continue;
      }
      // Already claimed: it is running; wait for it.
      if (ReadUntilEof(read_end.get(), request.deadline, request.cancelled,
                       [] { return false; }, &data) == ReadEnd::kEof) {
        break;
      }
    } else if (end == ReadEnd::kEof) {
      break;
    }
    std::string where = DescribeThreads(pid, st.symbols ? &*st.symbols : nullptr,
                                        kMaxThreadsInMessage);
    const std::string fate =
        TakeToken(token.get())
            ? "the queued code was withdrawn and will not run"
            : absl::StrCat("the code is running on ",
                           placed.point == SafePoint::kNewThread
                               ? std::string("a thread started for it")
                               : absl::StrCat("tid ", result->ran_on_tid),
                           " and will finish on its own; its output is dropped");
    KeepLeftover(pid, std::move(read_end), placed);
    if (request.cancelled()) {
      return absl::CancelledError(absl::StrCat("the call was cancelled; ", fate));
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "pid ", pid, ": the code did not complete in time (", result->safe_point,
        " safe point); ", fate, ". Threads: ", where));
  }
  absl::StatusOr<Record> record = ParseRecord(data);
  if (!record.ok()) {
    // EOF without a record: the fd closes as the target exits, a moment
    // before its pidfd says so.
    if (ProcessGone(watch.get(), absl::Seconds(1))) {
      return absl::NotFoundError(absl::StrCat("pid ", pid, " exited during the exec"));
    }
    KeepLeftover(pid, std::move(read_end), placed);
    return record.status();
  }
  result->record = *std::move(record);

  if (placed.point == SafePoint::kNewThread) {
    // The thread started for the code (pypy.h) ends right after reporting.
    pid_t tid = 0;
    (void)pypy::AwaitExecThreadExit(pid, placed.mapping, kNewThreadExitWait, &tid);
    result->ran_on_tid = tid;
    result->ran_on_main_thread = false;
  }
  // Completed: the scratch mapping goes, or waits for the next exec.
  if (!FreeScratch(caller, pid, watch.get(), placed, request.cancelled)) {
    KeepLeftover(pid, std::move(read_end), placed);
  }
  return absl::OkStatus();
}

}  // namespace procwarp::python
