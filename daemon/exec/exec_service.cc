// See exec_service.h.
#include "daemon/exec/exec_service.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "daemon/exec/caller_file.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/exec/exec_requests.h"
#include "daemon/exec/exec_target.h"
#include "daemon/exec/fd_install.h"
#include "daemon/exec/library_injector.h"
#include "daemon/exec/preflight.h"
#include "daemon/exec/remote_call.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/python/remote_exec.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp::exec {
namespace {

namespace pb = procwarp::exec::v1;

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

std::function<bool()> CancelledBy(grpc::ServerContext* context) {
  return [context] { return context->IsCancelled(); };
}

// "fd:01" for `st`'s device, as /proc/PID/maps prints it.
std::string MapsDevice(const struct stat& st) {
  return absl::StrFormat("%02x:%02x", major(st.st_dev), minor(st.st_dev));
}

// The mapping of the file {device, inode} in `pid`, if any.
const ptrace::Mapping* FindFileMapping(const std::vector<ptrace::Mapping>& maps,
                                       const std::string& device, uint64_t inode) {
  const ptrace::Mapping* inode_only = nullptr;
  for (const ptrace::Mapping& m : maps) {
    if (m.inode != inode || inode == 0) continue;
    if (m.dev == device) return &m;
    if (inode_only == nullptr) inode_only = &m;
  }
  // Stacked filesystems (overlayfs) may show another device than fstat.
  return inode_only;
}

void FillCrash(const CallResult& result, pb::CallResponse* response) {
  pb::Crash* crash = response->mutable_crash();
  crash->set_signal(result.signal);
  const char* abbrev = sigabbrev_np(result.signal);
  crash->set_signal_name(abbrev != nullptr ? absl::StrCat("SIG", abbrev)
                                           : absl::StrCat("signal ", result.signal));
  crash->set_fault_address(result.fault_address);
  crash->set_rip(result.fault_rip);
}

// A stable fingerprint of the code for the audit line (FNV-1a 64; not a
// security hash: it lets an auditor match a logged exec to known code
// without the daemon logging the code itself).
std::string CodeFingerprint(absl::string_view code) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : code) h = (h ^ c) * 0x100000001b3ULL;
  return absl::StrCat("fnv1a64:", absl::Hex(h, absl::kZeroPad16));
}

void FillPythonResponse(const python::RemoteExecResult& result,
                        pb::RunPythonResponse* response) {
  if (result.interpreter_found) {
    procwarp::v1::PythonInterpreter* interp = response->mutable_interpreter();
    interp->set_implementation(result.interpreter.implementation ==
                                       python::Implementation::kPyPy
                                   ? "PyPy"
                                   : "CPython");
    interp->set_version(result.interpreter.Version());
    interp->set_object(result.interpreter.object.path);
  }
  response->set_ran_on_tid(result.ran_on_tid);
  response->set_ran_on_main_thread(result.ran_on_main_thread);
  response->set_queued(result.queued);
  const python::Record& r = result.record;
  response->set_stdout(r.stdout_text);
  response->set_stderr(r.stderr_text);
  response->set_value_repr(r.value_repr);
  if (r.status == python::RecordStatus::kRaised) {
    pb::PythonException* exc = response->mutable_exception();
    exc->set_type(r.exception_type);
    exc->set_message(r.exception_message);
    exc->set_traceback(r.traceback);
  }
}

// The record's verdicts that are RPC errors.
absl::Status RecordStatusToStatus(const python::Record& r) {
  switch (r.status) {
    case python::RecordStatus::kVetoed:
      return absl::PermissionDeniedError(absl::StrCat(
          "an audit hook in the target vetoed procwarp.remote_exec: ", r.exception_type,
          ": ", r.exception_message));
    case python::RecordStatus::kRefused:
      return absl::PermissionDeniedError(
          "the target's audit hooks refused compiling or exec'ing procwarp's bootstrap "
          "(the compile/exec audit events)");
    case python::RecordStatus::kInternal:
      return absl::InternalError(absl::StrCat("the bootstrap failed in the target: ",
                                              r.exception_message));
    default:
      return absl::OkStatus();
  }
}

std::string Outcome(const absl::Status& status) {
  return status.ok() ? "ok" : status.ToString();
}

}  // namespace

absl::Time ExecService::Deadline(const grpc::ServerContext* context) const {
  return std::min(absl::FromChrono(context->deadline()),
                  absl::Now() + limits_.max_operation_time);
}

grpc::Status ExecService::Call(grpc::ServerContext* context,
                               const pb::CallRequest* request,
                               pb::CallResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    RETURN_IF_ERROR(CheckCallRequest(*request));
    ASSIGN_OR_RETURN(ExecTarget target,
                     ExecTarget::Resolve(request->target(), caller, threads_));
    const pid_t pid = target.pid();
    const std::vector<uint64_t> args(request->args().begin(), request->args().end());
    std::string exe = "?";
    auto attempt = [&]() -> absl::Status {
      return target.Run(
          caller, Deadline(context), CancelledBy(context),
          [&](ptrace::Operation& op) -> absl::Status {
            exe = ptrace::ExePath(pid);
            ASSIGN_OR_RETURN(SymbolResolver symbols,
                             SymbolResolver::ForProcess(op.pid(), &op.memory()));
            ResolvedSymbol called;
            ASSIGN_OR_RETURN(CallResult result, CallSymbol(op, symbols, request->function(),
                                                           args, &called));
            response->set_address(called.address);
            response->set_object(called.object);
            if (result.crashed()) {
              FillCrash(result, response);
            } else {
              response->set_return_value(result.value);
            }
            return absl::OkStatus();
          });
    };
    absl::Status status = attempt();
    // Refusals too: the audit trail shows who tried what on which process.
    std::vector<std::string> hex_args;
    for (uint64_t a : args) hex_args.push_back(Hex(a));
    Audit("exec.call", caller,
          {{"TARGET_PID", absl::StrCat(pid)},
           {"THREAD_ID", target.thread_id()},
           {"TARGET_EXE", exe},
           {"FUNCTION", request->function()},
           {"ADDRESS", Hex(response->address())},
           {"ARGS", absl::StrJoin(hex_args, ",")},
           {"RESULT", !status.ok() ? "-"
                      : response->has_crash()
                          ? absl::StrCat("crashed ", response->crash().signal_name())
                          : Hex(response->return_value())},
           {"OUTCOME", Outcome(status)}});
    if (!status.ok()) response->Clear();
    return status;
  });
}

grpc::Status ExecService::InjectLibrary(grpc::ServerContext* context,
                                        const pb::InjectLibraryRequest* request,
                                        pb::InjectLibraryResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    RETURN_IF_ERROR(CheckInjectLibraryRequest(*request));
    ASSIGN_OR_RETURN(ExecTarget target,
                     ExecTarget::Resolve(request->target(), caller, threads_));
    const pid_t pid = target.pid();
    const std::string& path = request->path();
    ASSIGN_OR_RETURN(LibraryTable::Reservation slot, libraries_.Reserve(caller));
    const absl::Time deadline = Deadline(context);
    LoadedLibrary library;
    library.owner = caller;
    library.pid = pid;
    library.thread_id = target.thread_id();
    std::string exe = "?";
    auto attempt = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(UniqueFd kept, target.DupPidfd());
      // Nothing is opened for a caller who may not touch the target anyway.
      RETURN_IF_ERROR(
          CheckCallerMayPtrace(caller, pid, kept.get(), absl::StrCat("pid ", pid)));
      // As the caller: nobody loads a library they could not read.
      ASSIGN_OR_RETURN(UniqueFd file,
                       OpenFileAsCaller(caller, path, deadline, CancelledBy(context)));
      struct stat st {};
      if (fstat(file.get(), &st) != 0) return ErrnoStatus(errno, "fstat(library)");
      library.device = MapsDevice(st);
      library.inode = st.st_ino;
      absl::Status loaded = target.Run(
          caller, deadline, CancelledBy(context),
          [&](ptrace::Operation& op) -> absl::Status {
            exe = ptrace::ExePath(pid);
            ASSIGN_OR_RETURN(SymbolResolver symbols,
                             SymbolResolver::ForProcess(op.pid(), &op.memory()));
            if (symbols.FindObject("libc.so.6") == nullptr) {
              // The injector's own refusal, which names what was found,
              // before anything is put into the target.
              return exec::InjectLibrary(op, symbols, path).status();
            }
            ASSIGN_OR_RETURN(int fd, InstallFd(op, kept.get(), file.get()));
            absl::StatusOr<uint64_t> handle =
                exec::InjectLibrary(op, symbols, absl::StrCat("/proc/self/fd/", fd));
            absl::Status closed = CloseTargetFd(op, fd);
            if (!handle.ok()) {
              return absl::Status(handle.status().code(),
                                  absl::StrCat("loading ", path, ": ",
                                               handle.status().message()));
            }
            library.dl_handle = *handle;
            ASSIGN_OR_RETURN(std::vector<ptrace::Mapping> maps, ptrace::ReadMaps(pid));
            const ptrace::Mapping* mapped =
                FindFileMapping(maps, library.device, library.inode);
            library.path = mapped != nullptr ? mapped->path : path;
            return closed;
          });
      library.pidfd = std::move(kept);
      return loaded;
    };
    absl::Status status = attempt();
    Audit("exec.inject", caller,
          {{"TARGET_PID", absl::StrCat(pid)},
           {"THREAD_ID", target.thread_id()},
           {"TARGET_EXE", exe},
           {"LIBRARY", path},
           {"DL_HANDLE", Hex(library.dl_handle)},
           {"OUTCOME", Outcome(status)}});
    if (library.dl_handle == 0) return status;
    // Loaded: whatever went wrong afterwards (closing its fd in the target,
    // reading the maps; the audit entry says what), the caller gets the
    // handle, or it could never unload the library.
    if (library.path.empty()) library.path = path;
    response->set_pid(pid);
    response->set_path(library.path);
    response->set_handle(libraries_.Insert(std::move(slot), std::move(library)));
    return absl::OkStatus();
  });
}

grpc::Status ExecService::UnloadLibrary(grpc::ServerContext* context,
                                        const pb::UnloadLibraryRequest* request,
                                        pb::UnloadLibraryResponse*) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    RETURN_IF_ERROR(CheckUnloadLibraryRequest(*request));
    const std::string& id = request->handle();
    ASSIGN_OR_RETURN(std::shared_ptr<LoadedLibrary> library, libraries_.Take(id, caller));
    // Through the attached thread it was loaded by while the caller still
    // holds it (a second attach would be refused), else one attach.
    absl::StatusOr<ExecTarget> target =
        ExecTarget::ForProcess(library->pid, library->pidfd.get(),
                               library->thread_id, caller, threads_);
    if (!target.ok()) {
      libraries_.Restore(id, std::move(library));
      return target.status();
    }
    const pid_t pid = library->pid;
    bool gone = false;  // the handle means nothing any more
    std::string exe = "?";
    absl::Status status = target->Run(
        caller, Deadline(context), CancelledBy(context),
        [&](ptrace::Operation& op) -> absl::Status {
          exe = ptrace::ExePath(pid);
          // dlclose() of a pointer from another program would be called
          // into garbage: the library must still be mapped (an exec since
          // the injection, or the program's own dlclose, unmaps it).
          ASSIGN_OR_RETURN(std::vector<ptrace::Mapping> maps, ptrace::ReadMaps(pid));
          if (FindFileMapping(maps, library->device, library->inode) == nullptr) {
            gone = true;
            return absl::FailedPreconditionError(absl::StrCat(
                library->path, " is no longer loaded in pid ", pid,
                " (it exec'd or unloaded it itself); the handle is forgotten"));
          }
          ASSIGN_OR_RETURN(SymbolResolver symbols,
                           SymbolResolver::ForProcess(op.pid(), &op.memory()));
          return exec::UnloadLibrary(op, symbols, library->dl_handle);
        });
    Audit("exec.unload", caller,
          {{"TARGET_PID", absl::StrCat(pid)},
           {"TARGET_EXE", exe},
           {"LIBRARY", library->path},
           {"DL_HANDLE", Hex(library->dl_handle)},
           {"OUTCOME", Outcome(status)}});
    if (!status.ok() && !gone && !absl::IsNotFound(status)) {
      // Not unloaded (the target was busy, stopped, the call cancelled...):
      // the handle stays usable for another try.
      libraries_.Restore(id, std::move(library));
    }
    return status;
  });
}

grpc::Status ExecService::RunPython(grpc::ServerContext* context,
                                    const pb::RunPythonRequest* request,
                                    pb::RunPythonResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    ASSIGN_OR_RETURN(ExecTarget target,
                     ExecTarget::Resolve(request->target(), caller, threads_));
    if (!target.thread_id().empty()) {
      // RunPython attaches twice on its own terms (the safe point, then the
      // clean-up) and detaches while the code waits to run; an attachment
      // the caller holds would be a second tracer.
      return absl::FailedPreconditionError(
          "RunPython takes the target's pid, not an attached thread: "
          "detach it (ExitThread) or name the pid");
    }
    const pid_t pid = target.pid();
    const std::string& code = request->code();
    python::RemoteExecResult result;
    auto attempt = [&]() -> absl::Status {
      RETURN_IF_ERROR(CheckRunPythonRequest(*request, caller));
      python::RemoteExecRequest exec;
      exec.pid = pid;
      exec.code = code;
      exec.eval = request->mode() == pb::PYTHON_MODE_EVAL;
      exec.main_thread_only = request->main_thread_only();
      exec.no_wait = request->no_wait();
      exec.override_opt_out = request->override_opt_out();
      exec.deadline = Deadline(context);
      if (request->timeout_ms() != 0) {
        exec.deadline = std::min(exec.deadline,
                                 absl::Now() + absl::Milliseconds(request->timeout_ms()));
      }
      exec.cancelled = CancelledBy(context);
      RETURN_IF_ERROR(python::RunPython(caller, exec, &result));
      return RecordStatusToStatus(result.record);
    };
    absl::Status status = attempt();
    Audit("exec.python", caller,
          {{"TARGET_PID", absl::StrCat(pid)},
           {"TARGET_EXE", ptrace::ExePath(pid)},
           {"INTERPRETER", result.interpreter_found ? result.interpreter.Describe() : "-"},
           {"CODE_LENGTH", absl::StrCat(code.size())},
           {"CODE_HASH", CodeFingerprint(code)},
           {"MODE", request->mode() == pb::PYTHON_MODE_EVAL ? "eval" : "exec"},
           {"SAFE_POINT", result.safe_point.empty() ? "-" : result.safe_point},
           {"RAN_ON_TID", absl::StrCat(result.ran_on_tid)},
           {"OPT_OUT_OVERRIDDEN", result.opt_out_overridden ? "yes" : "no"},
           {"OUTCOME", Outcome(status)}});
    if (!status.ok()) return status;
    FillPythonResponse(result, response);
    return absl::OkStatus();
  });
}

grpc::Status ExecService::Preflight(grpc::ServerContext* context,
                                    const pb::PreflightRequest* request,
                                    pb::PreflightResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    RETURN_IF_ERROR(CheckPreflightRequest(*request));
    DaemonPreflight(caller, response);
    if (!request->has_pid()) return absl::OkStatus();
    return TargetPreflight(caller, request->pid(), response);
  });
}

}  // namespace procwarp::exec
