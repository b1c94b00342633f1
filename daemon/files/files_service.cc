// See files_service.h.
//
// These are not raw syscalls: a failure (EBADF, EMFILE...) is an RPC error
// naming the call, the thread and the fd.
#include "daemon/files/files_service.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/files/file_requests.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/fault_point.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {
namespace {

// One fd's entry from /proc/PID/fd and /proc/PID/fdinfo of the process
// behind `proc` (`fd_dir` is its open /proc/PID/fd).
absl::StatusOr<procwarp::v1::FdInfo> ReadFdInfo(const ProcDir& proc, int fd_dir,
                                                int fd) {
  procwarp::v1::FdInfo info;
  info.set_fd(fd);
  const std::string name = absl::StrCat(fd);
  char target[PATH_MAX];
  ssize_t n = readlinkat(fd_dir, name.c_str(), target, sizeof(target));
  if (n < 0) {
    return ErrnoStatus(
        errno, absl::StrCat("readlink(/proc/", proc.pid(), "/fd/", fd, ")"));
  }
  info.set_path(std::string(target, n));
  UniqueFd fdinfo(openat(proc.fd(), absl::StrCat("fdinfo/", fd).c_str(),
                         O_RDONLY | O_CLOEXEC));
  std::string text;
  char buffer[4096];
  for (ssize_t got;
       fdinfo && (got = read(fdinfo.get(), buffer, sizeof(buffer))) > 0;) {
    text.append(buffer, got);
  }
  for (absl::string_view rest : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&rest, "pos:")) {
      int64_t pos = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &pos)) {
        info.set_position(pos);
      }
    } else if (absl::ConsumePrefix(&rest, "flags:")) {
      // Printed in octal.
      int flags = static_cast<int>(strtol(
          std::string(absl::StripAsciiWhitespace(rest)).c_str(), nullptr, 8));
      info.set_flags(flags & ~O_CLOEXEC);
      info.set_cloexec((flags & O_CLOEXEC) != 0);
    }
  }
  return info;
}

// The fds of the process behind `proc`, in order, with what /proc says of
// them.
absl::Status ReadFds(const ProcDir& proc,
                     procwarp::v1::ListFdsResponse* response) {
  const std::string dir_path = absl::StrCat("/proc/", proc.pid(), "/fd");
  int dir_fd = openat(proc.fd(), "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("ListFds: open(", dir_path, ")"));
  }
  DIR* dir = fdopendir(dir_fd);
  if (dir == nullptr) {
    close(dir_fd);
    return ErrnoStatus(errno,
                       absl::StrCat("ListFds: fdopendir(", dir_path, ")"));
  }
  std::vector<int> fds;
  while (dirent* entry = readdir(dir)) {
    int fd;
    if (absl::SimpleAtoi(entry->d_name, &fd)) fds.push_back(fd);
  }
  std::sort(fds.begin(), fds.end());
  for (int fd : fds) {
    absl::StatusOr<procwarp::v1::FdInfo> info =
        ReadFdInfo(proc, dirfd(dir), fd);
    // Closed meanwhile: it is simply not there any more.
    if (info.ok()) *response->add_fds() = *std::move(info);
  }
  closedir(dir);
  return absl::OkStatus();
}

}  // namespace

grpc::Status FilesService::ListFds(grpc::ServerContext* context,
                                   const procwarp::v1::ListFdsRequest* request,
                                   procwarp::v1::ListFdsResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    // Read as root, then judged: the list is the caller's only if it could
    // have read it itself at that moment.
    absl::Status read = thread->ActOnProcess(
        caller, [&](const ProcDir& proc) { return ReadFds(proc, response); });
    if (!read.ok()) response->clear_fds();
    return read;
  });
}

grpc::Status FilesService::CloseFd(grpc::ServerContext* context,
                                   const procwarp::v1::CloseFdRequest* request,
                                   procwarp::v1::CloseFdResponse*) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    RETURN_IF_ERROR(CheckCloseFdRequest(*request));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    return thread
        ->CheckedSyscall(
            caller,
            ThreadSyscall::Of(SYS_close, {static_cast<uint64_t>(request->fd())}),
            absl::StrCat("CloseFd: close(", request->fd(), ")"))
        .status();
  });
}

grpc::Status FilesService::DupFd(grpc::ServerContext* context,
                                 const procwarp::v1::DupFdRequest* request,
                                 procwarp::v1::DupFdResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    RETURN_IF_ERROR(CheckDupFdRequest(*request));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    const uint64_t fd = request->fd();
    int64_t r;
    if (request->has_target_fd()) {
      ASSIGN_OR_RETURN(
          r, thread->CheckedSyscall(
                 caller,
                 ThreadSyscall::Of(SYS_dup3,
                                   {fd, static_cast<uint64_t>(request->target_fd()),
                                    request->cloexec() ? O_CLOEXEC : 0u}),
                 absl::StrCat("DupFd: dup3(", fd, ", ", request->target_fd(),
                              ")")));
    } else {
      ASSIGN_OR_RETURN(
          r, thread->CheckedSyscall(
                 caller,
                 ThreadSyscall::Of(
                     SYS_fcntl,
                     {fd, static_cast<uint64_t>(
                              request->cloexec() ? F_DUPFD_CLOEXEC : F_DUPFD),
                      0}),
                 absl::StrCat("DupFd: fcntl(", fd, ", F_DUPFD)")));
    }
    response->set_fd(static_cast<int32_t>(r));
    return absl::OkStatus();
  });
}

grpc::Status FilesService::TransferFd(
    grpc::ServerContext* context, const procwarp::v1::TransferFdRequest* request,
    procwarp::v1::TransferFdResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    RETURN_IF_ERROR(CheckTransferFdRequest(*request));
    ASSIGN_OR_RETURN(auto source,
                     table_->Find(request->source_thread_id(), caller));
    ASSIGN_OR_RETURN(auto target,
                     table_->Find(request->target_thread_id(), caller));
    RETURN_IF_ERROR(source->CheckAlive());
    FaultPoint("transfer", 0, source->pidfd());  // before the fetch
    // Into the daemon first (close-on-exec here, always).
    ASSIGN_OR_RETURN(UniqueFd copy,
                     source->FetchFd(caller, request->source_fd(), "TransferFd"));
    FaultPoint("transfer", 1, source->pidfd());  // fetched
    FaultPoint("transfer", 2, target->pidfd());  // before the install
    // The caller's own fd (FetchFd checked that), so installing it gives the
    // target's thread nothing its owner could not have handed it.
    ASSIGN_OR_RETURN(
        int64_t installed,
        target->InstallFd(caller, copy.get(),
                          request->has_target_fd() ? request->target_fd() : -1,
                          request->cloexec()));
    if (installed < 0) {
      return ErrnoStatus(static_cast<int>(-installed),
                         absl::StrCat("TransferFd: installing the fd in ",
                                      target->Name()));
    }
    FaultPoint("transfer", 3, target->pidfd());  // installed, before the answer
    response->set_fd(static_cast<int32_t>(installed));
    Audit("fd_transfer", caller,
          {{"SOURCE_THREAD_ID", source->id()},
           {"SOURCE_FD", absl::StrCat(request->source_fd())},
           {"THREAD_ID", target->id()},
           {"FD", absl::StrCat(response->fd())}});
    return absl::OkStatus();
  });
}

grpc::Status FilesService::SetCloexec(
    grpc::ServerContext* context, const procwarp::v1::SetCloexecRequest* request,
    procwarp::v1::SetCloexecResponse*) {
  return WithCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    RETURN_IF_ERROR(CheckSetCloexecRequest(*request));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    return thread
        ->CheckedSyscall(
            caller,
            ThreadSyscall::Of(SYS_fcntl, {static_cast<uint64_t>(request->fd()),
                                          F_SETFD,
                                          request->cloexec() ? FD_CLOEXEC : 0u}),
            absl::StrCat("SetCloexec: fcntl(", request->fd(), ", F_SETFD)"))
        .status();
  });
}

absl::Status FilesService::CheckSideChannel(const Session& session,
                                              absl::string_view call) const {
  if (side_channel_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        call, ": the daemon has no fd side socket (socket-activated on an "
              "unnamed socket, or binding it failed)"));
  }
  // SCM_RIGHTS only works between processes on this host, and the token is
  // bound to the caller's pid.
  if (session.identity.pid <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(call, ": only local clients can exchange fds"));
  }
  return absl::OkStatus();
}

grpc::Status FilesService::ExportFd(grpc::ServerContext* context,
                                    const procwarp::v1::ExportFdRequest* request,
                                    procwarp::v1::ExportFdResponse* response) {
  return WithSession(*callers_, context, [&](const Session& session) -> absl::Status {
    RETURN_IF_ERROR(RequireLocal(
        session, "Files.ExportFd",
        "Files.TransferFd between threads on the daemon's host"));
    const Identity& caller = session.identity;
    RETURN_IF_ERROR(CheckExportFdRequest(*request));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    RETURN_IF_ERROR(CheckSideChannel(session, "ExportFd"));
    RETURN_IF_ERROR(thread->CheckAlive());
    // Copied now, so a bad fd is this call's error and the client gets the
    // file as it was at the call even if the thread closes it meanwhile.
    ASSIGN_OR_RETURN(UniqueFd copy,
                     thread->FetchFd(caller, request->fd(), "ExportFd"));
    ASSIGN_OR_RETURN(std::string token,
                     side_channel_->AddExport(session, std::move(copy), thread));
    response->set_token(std::move(token));
    response->set_side_socket_path(side_channel_->path());
    Audit("fd_export", caller,
          {{"THREAD_ID", thread->id()}, {"FD", absl::StrCat(request->fd())}});
    return absl::OkStatus();
  });
}

grpc::Status FilesService::ImportFd(grpc::ServerContext* context,
                                    const procwarp::v1::ImportFdRequest* request,
                                    procwarp::v1::ImportFdResponse* response) {
  return WithSession(*callers_, context, [&](const Session& session) -> absl::Status {
    RETURN_IF_ERROR(RequireLocal(
        session, "Files.ImportFd",
        "Files.TransferFd, or open the file with a syscall in the thread"));
    const Identity& caller = session.identity;
    RETURN_IF_ERROR(CheckImportFdRequest(*request));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    RETURN_IF_ERROR(CheckSideChannel(session, "ImportFd"));
    RETURN_IF_ERROR(thread->CheckAlive());
    // The fd is the client's own, installed by Thread::InstallFd (an agent
    // receives it itself with its owner's credentials; an attached thread's
    // authority is checked at the install).
    ASSIGN_OR_RETURN(std::string token,
                     side_channel_->AddImport(session, thread, request->target_fd(),
                                              request->cloexec()));
    response->set_token(std::move(token));
    response->set_side_socket_path(side_channel_->path());
    Audit("fd_import", caller,
          {{"THREAD_ID", thread->id()},
           {"TARGET_FD", absl::StrCat(request->target_fd())}});
    return absl::OkStatus();
  });
}

}  // namespace procwarp
