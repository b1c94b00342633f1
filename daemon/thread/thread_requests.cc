// See thread_requests.h.
#include "daemon/thread/thread_requests.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/server/record_bounds.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

constexpr int kMaxArgs = 6;

}  // namespace

absl::Status CheckCreateThreadRequest(
    const procwarp::v1::CreateThreadRequest& request) {
  RETURN_IF_ERROR(CheckLabelBytes(request.labels(), "CreateThread"));
  if (request.parent_thread_id().empty() && request.share_fd_table()) {
    return absl::InvalidArgumentError(
        "CreateThread: share_fd_table needs a parent_thread_id");
  }
  return absl::OkStatus();
}

absl::Status CheckAttachThreadRequest(
    const procwarp::v1::AttachThreadRequest& request) {
  RETURN_IF_ERROR(CheckLabelBytes(request.labels(), "AttachThread"));
  if (request.pid() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AttachThread: pid ", request.pid(), " is not a process id"));
  }
  if (request.has_tid() && request.tid() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AttachThread: tid ", request.tid(), " is not a thread id"));
  }
  return absl::OkStatus();
}

absl::Status ToThreadSyscall(const procwarp::v1::Syscall& syscall, int index,
                             ThreadSyscall* call) {
  if (syscall.args_size() > kMaxArgs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "syscall ", index, " (number ", syscall.number(), ") has ",
        syscall.args_size(), " arguments; at most 6"));
  }
  *call = ThreadSyscall();
  call->nr = syscall.number();
  for (int i = 0; i < syscall.args_size(); ++i) {
    call->args[i] = static_cast<uint64_t>(syscall.args(i));
  }
  return absl::OkStatus();
}

absl::Status ToThreadSyscalls(const procwarp::v1::ExecuteRequest& request,
                              uint64_t batch, absl::string_view stream_thread_id,
                              std::vector<ThreadSyscall>* calls) {
  if (!request.thread_id().empty() && request.thread_id() != stream_thread_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Execute: message ", batch, " names thread ", request.thread_id(),
        " but the stream is for ", stream_thread_id));
  }
  if (request.syscalls_size() > kMaxExecuteBatch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Execute: message ", batch, " has ", request.syscalls_size(),
        " syscalls; at most ", kMaxExecuteBatch, " per message"));
  }
  calls->resize(request.syscalls_size());
  for (int i = 0; i < request.syscalls_size(); ++i) {
    RETURN_IF_ERROR(ToThreadSyscall(request.syscalls(i), i, &(*calls)[i]));
  }
  return absl::OkStatus();
}

absl::Status CheckExecRequest(const procwarp::v1::ExecRequest& request) {
  if (request.argv_size() == 0) {
    return absl::InvalidArgumentError("Exec: argv is empty");
  }
  size_t total = request.path().size();
  auto check = [&](const std::string& s, absl::string_view what) {
    total += s.size() + 1;
    if (s.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("Exec: ", what, " contains a NUL byte"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(check(request.path(), "path"));
  for (const std::string& arg : request.argv()) {
    RETURN_IF_ERROR(check(arg, "an argv string"));
  }
  for (const std::string& var : request.env()) {
    RETURN_IF_ERROR(check(var, "an env string"));
  }
  if (total > kMaxExecStrings) {
    return absl::InvalidArgumentError(
        absl::StrCat("Exec: path, argv and env add up to ", total,
                     " bytes; at most ", kMaxExecStrings));
  }
  return CheckLabelBytes(request.labels(), "Exec");
}

std::string ExecBlock(uint64_t base, const std::string& path,
                      const procwarp::v1::ExecRequest& request) {
  const size_t argc = request.argv_size();
  const size_t envc = request.env_size();
  const size_t arrays = (argc + 1 + envc + 1) * sizeof(uint64_t);
  std::vector<uint64_t> pointers;
  std::string strings;
  auto add = [&](const std::string& s) {
    uint64_t address = base + arrays + strings.size();
    strings.append(s);
    strings.push_back('\0');
    return address;
  };
  add(path);
  for (const std::string& arg : request.argv()) pointers.push_back(add(arg));
  pointers.push_back(0);
  for (const std::string& var : request.env()) pointers.push_back(add(var));
  pointers.push_back(0);
  std::string block(arrays, '\0');
  memcpy(block.data(), pointers.data(), arrays);
  return block + strings;
}

absl::Status CheckListThreadsRequest(
    const procwarp::v1::ListThreadsRequest& request, const Identity& caller) {
  if (request.all() && !caller.admin) {
    return absl::PermissionDeniedError(
        "ListThreads: listing every user's threads needs root or the admin "
        "group");
  }
  return absl::OkStatus();
}

}  // namespace procwarp
