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
    ASSIGN_OR_RETURN(std::unique_ptr<LoadedLibrary> library, libraries_.Take(id, caller));
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
