// See snapshots_service.h.
#include "daemon/snapshots/snapshots_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "daemon/exec/transient_attach.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/python/native_merge.h"
#include "daemon/python/stack_memory.h"
#include "daemon/python/stack_target.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/server/log.h"
#include "daemon/snapshots/native_unwind.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/pidfd.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::snapshots {
namespace {

// A process in the middle of exiting lets go of its memory before its pidfd
// says it exited: what detection reads (maps, map_files) is gone then, and
// that must read as "exited", not as "not a Python".
bool ExitingOrExited(pid_t pid, int pidfd) {
  if (PidfdExited(pidfd)) return true;
  absl::StatusOr<std::vector<ptrace::Mapping>> maps = ptrace::ReadMaps(pid);
  return !maps.ok() || maps->empty();
}

namespace pb = procwarp::snapshots::v1;

// A thread of the target as the daemon sees it.
struct Task {
  pid_t host_tid = 0;
  char state = '?';  // /proc/PID/task/TID/stat: R running, S sleeping, D disk, ...
};

// The last number of the "NSpid:" line of a /proc/.../status text: the tid
// in the thread's own pid namespace (a container's); 0 when absent.
pid_t InnermostTid(absl::string_view status) {
  size_t at = status.find("\nNSpid:");
  if (at == absl::string_view::npos) return 0;
  absl::string_view line = status.substr(at + 7);
  line = line.substr(0, line.find('\n'));
  size_t last = line.find_last_of(" \t");
  pid_t tid = 0;
  return absl::SimpleAtoi(line.substr(last == absl::string_view::npos ? 0 : last + 1), &tid)
             ? tid
             : 0;
}

// Every thread of the process behind `dir`, keyed by its tid in the
// process's own pid namespace — the tid the interpreter records
// (native_thread_id, glibc's pthread tid): in a container (other pid
// namespace; py-spy#285) that is not the host's tid the daemon reports.
std::map<pid_t, Task> TaskStates(const ProcDir& dir) {
  std::map<pid_t, Task> out;
  UniqueFd task(openat(dir.fd(), "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!task) return out;
  DIR* listing = fdopendir(dup(task.get()));
  if (listing == nullptr) return out;
  while (dirent* entry = readdir(listing)) {
    pid_t tid = atoi(entry->d_name);
    if (tid <= 0) continue;
    UniqueFd stat(openat(task.get(), absl::StrCat(entry->d_name, "/stat").c_str(),
                         O_RDONLY | O_CLOEXEC));
    if (!stat) continue;
    char buffer[512];
    ssize_t n = read(stat.get(), buffer, sizeof(buffer) - 1);
    if (n <= 0) continue;
    buffer[n] = '\0';
    // "TID (comm) S ...": the comm may hold anything, the state follows
    // the last ')'.
    const char* paren = strrchr(buffer, ')');
    if (paren == nullptr || paren[1] != ' ' || paren[2] == '\0') continue;
    pid_t inner = tid;
    UniqueFd status(openat(task.get(), absl::StrCat(entry->d_name, "/status").c_str(),
                           O_RDONLY | O_CLOEXEC));
    char text[4096];
    ssize_t got = status ? read(status.get(), text, sizeof(text) - 1) : -1;
    if (got > 0) {
      text[got] = '\0';
      if (pid_t t = InnermostTid(absl::string_view(text, got)); t > 0) inner = t;
    }
    out[inner] = Task{tid, paren[2]};
  }
  closedir(listing);
  return out;
}

void FillThreads(const std::map<pid_t, Task>& tasks,
                 std::vector<pb::PythonThread> threads, pb::PythonStackResponse* response) {
  for (pb::PythonThread& thread : threads) {
    auto task = tasks.find(thread.tid());
    if (task == tasks.end()) {
      thread.set_tid(0);  // not a thread of this process: not told
    } else {
      thread.set_tid(task->second.host_tid);
      // Running (or runnable) Python is busy; anything else waits.
      thread.set_idle(task->second.state != 'R');
    }
    *response->add_threads() = std::move(thread);
  }
}

// The host tids of `threads` (whose tids are the target's own): the
// threads to unwind.
std::vector<pid_t> HostTids(const std::map<pid_t, Task>& tasks,
                            const std::vector<pb::PythonThread>& threads) {
  std::vector<pid_t> out;
  for (const pb::PythonThread& thread : threads) {
    auto task = tasks.find(thread.tid());
    if (task != tasks.end()) out.push_back(task->second.host_tid);
  }
  return out;
}

pb::PythonFrame ToFrame(const NativeFrame& native) {
  pb::PythonFrame frame;
  frame.set_function(native.symbol);
  frame.set_file(native.object);
  frame.set_line(-1);
  frame.set_is_native(true);
  frame.set_native_address(native.pc);
  if (!native.symbol.empty()) frame.set_native_symbol_offset(native.symbol_offset);
  frame.set_native_elf_address(native.elf_address);
  return frame;
}

// Puts `native` (innermost first) into `thread`: merged with its Python
// frames where native_merge.h finds them matching, else side by side.
void AddNativeFrames(const UnwoundStack& native, const python::EvalEntries& entries,
                     pb::PythonThread* thread) {
  if (native.frames.empty()) {
    thread->set_native_stack(pb::NATIVE_STACK_UNAVAILABLE);
    thread->set_native_note(native.note);
    return;
  }
  std::vector<pb::PythonFrame> frames;  // outermost first
  for (auto it = native.frames.rbegin(); it != native.frames.rend(); ++it) {
    frames.push_back(ToFrame(*it));
  }
  const std::vector<pb::PythonFrame> python(thread->frames().begin(),
                                            thread->frames().end());
  absl::StatusOr<std::vector<pb::PythonFrame>> merged =
      python::MergeNativeFrames(python, entries, frames);
  if (merged.ok()) {
    thread->set_native_stack(pb::NATIVE_STACK_MERGED);
    thread->clear_frames();
    for (pb::PythonFrame& frame : *merged) *thread->add_frames() = std::move(frame);
    thread->set_native_note(native.note);
    return;
  }
  thread->set_native_stack(pb::NATIVE_STACK_SEPARATE);
  for (pb::PythonFrame& frame : frames) *thread->add_native_frames() = std::move(frame);
  thread->set_native_note(native.note.empty()
                              ? std::string(merged.status().message())
                              : absl::StrCat(merged.status().message(), "; ", native.note));
}

absl::Status ReadSnapshot(const Identity& caller, const pb::PythonStackRequest& request,
                          absl::Time deadline, std::function<bool()> cancelled,
                          const python::StackLimits& limits,
                          pb::PythonStackResponse* response) {
  const pid_t pid = request.pid();
  if (pid <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("pid ", pid, " is not a process id"));
  }
  if (pid == getpid()) {
    return absl::FailedPreconditionError("pid is procwarpd itself");
  }
  const std::string what = absl::StrCat("pid ", pid);
  ASSIGN_OR_RETURN(UniqueFd pidfd, exec::OpenPidfd(pid));
  ASSIGN_OR_RETURN(ProcDir dir, ProcDir::Open(pid, pidfd.get()));
  RETURN_IF_ERROR(CheckCallerMayPtrace(caller, dir, what));
  ASSIGN_OR_RETURN(UniqueFd mem, OpenProcessMemory(dir));
  python::ProcMemReader memory(std::move(mem));
  absl::StatusOr<python::StackTarget> found = python::FindStackTarget(pid, memory);
  if (!found.ok() && ExitingOrExited(pid, pidfd.get())) {
    return absl::NotFoundError(absl::StrCat(what, " exited during the read"));
  }
  RETURN_IF_ERROR(found.status());
  const python::StackTarget& target = *found;
  // Before any stop: a consistent read would see every thread stopped.
  const std::map<pid_t, Task> states = TaskStates(dir);
  std::vector<pb::PythonThread> threads;
  std::vector<python::EvalEntries> entries;
  std::map<pid_t, UnwoundStack> native;
  int retries = 0;
  absl::Status read;
  if (request.consistent() || request.native()) {
    UniqueFd attach_fd(fcntl(pidfd.get(), F_DUPFD_CLOEXEC, 0));
    if (!attach_fd) return ErrnoStatus(errno, "dup(pidfd)");
    read = exec::RunAttached(
        caller, pid, std::move(attach_fd), deadline, std::move(cancelled),
        [&](ptrace::Operation& op) -> absl::Status {
          RETURN_IF_ERROR(op.StopOtherThreads().status());
          RETURN_IF_ERROR(python::ReadStacksConsistent(memory, target.where,
                                                       request.locals(), limits, &threads,
                                                       &retries, &entries));
          if (!request.native()) return absl::OkStatus();
          // In the same stop, from this (the tracer) thread: native_unwind.h.
          ASSIGN_OR_RETURN(native, UnwindStoppedThreads(pid, HostTids(states, threads),
                                                        limits.max_native_frames, deadline));
          return absl::OkStatus();
        });
  } else {
    read = python::ReadStacksConsistent(memory, target.where, request.locals(), limits,
                                        &threads, &retries);
  }
  if (PidfdExited(pidfd.get())) {
    return absl::NotFoundError(absl::StrCat(what, " exited during the read"));
  }
  RETURN_IF_ERROR(read);
  // Authority at use: what was read goes back only if the caller could
  // still read it itself.
  RETURN_IF_ERROR(CheckCallerMayPtrace(caller, dir, what));
  procwarp::v1::PythonInterpreter* interpreter = response->mutable_interpreter();
  interpreter->set_implementation(target.implementation);
  interpreter->set_version(target.version);
  interpreter->set_object(target.object);
  FillThreads(states, std::move(threads), response);
  if (request.native()) {
    for (int i = 0; i < response->threads_size(); ++i) {
      pb::PythonThread* thread = response->mutable_threads(i);
      auto stack = native.find(thread->tid());
      if (stack == native.end() || static_cast<size_t>(i) >= entries.size()) {
        thread->set_native_stack(pb::NATIVE_STACK_UNAVAILABLE);
        thread->set_native_note("no task of the process matches this thread");
        continue;
      }
      AddNativeFrames(stack->second, entries[i], thread);
    }
  }
  response->set_retries(retries);
  return absl::OkStatus();
}

}  // namespace

grpc::Status SnapshotsService::PythonStack(grpc::ServerContext* context,
                                           const pb::PythonStackRequest* request,
                                           pb::PythonStackResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    const absl::Time deadline = std::min(absl::FromChrono(context->deadline()),
                                         absl::Now() + max_operation_time_);
    absl::Status status =
        ReadSnapshot(caller, *request, deadline, [context] { return context->IsCancelled(); },
                     limits_, response);
    // Only reads that stop the target are audited: the others change
    // nothing (as Memory reads).
    if (request->consistent() || request->native()) {
      Audit("snapshots.python_stack", caller,
            {{"TARGET_PID", absl::StrCat(request->pid())},
             {"CONSISTENT", "1"},
             {"NATIVE", request->native() ? "1" : "0"},
             {"OUTCOME", status.ok() ? "ok" : status.ToString()}});
    }
    if (!status.ok()) response->Clear();
    return status;
  });
}

}  // namespace procwarp::snapshots
