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

namespace {

// An attach to process `pid`, thread `tid` if `has_tid`.
absl::Status CheckAttachTarget(int32_t pid, bool has_tid, int32_t tid,
                               absl::string_view call) {
  if (pid <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(call, ": pid ", pid, " is not a process id"));
  }
  if (has_tid && tid <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(call, ": tid ", tid, " is not a thread id"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckCreateThreadRequest(
    const procwarp::v1::CreateThreadRequest& request) {
  RETURN_IF_ERROR(CheckLabelBytes(request.labels(), "CreateThread"));
  using Request = procwarp::v1::CreateThreadRequest;
  if (request.origin_case() == Request::ORIGIN_NOT_SET) {
    // As before `origin` existed: a launch, or a clone with a parent.
    if (request.parent_thread_id().empty() && request.share_fd_table()) {
      return absl::InvalidArgumentError(
          "CreateThread: share_fd_table needs a parent_thread_id");
    }
    return absl::OkStatus();
  }
  if (request.has_namespaces() || !request.parent_thread_id().empty() ||
      request.share_fd_table()) {
    return absl::InvalidArgumentError(
        "CreateThread: with an origin (launch, clone, attach), namespaces, "
        "parent_thread_id and share_fd_table go inside it, not beside it");
  }
  switch (request.origin_case()) {
    case Request::kClone:
      if (request.clone().parent_thread_id().empty()) {
        return absl::InvalidArgumentError(
            "CreateThread: clone needs a parent_thread_id");
      }
      return absl::OkStatus();
    case Request::kAttach: {
      const procwarp::v1::AttachTarget& target = request.attach();
      return CheckAttachTarget(target.pid(), target.has_tid(), target.tid(),
                               "CreateThread (attach)");
    }
    default:
      return absl::OkStatus();
  }
}

procwarp::v1::CreateThreadRequest ToAgentThreadRequest(
    const procwarp::v1::CreateThreadRequest& request) {
  procwarp::v1::CreateThreadRequest agent;
  agent.set_persistent(request.persistent());
  *agent.mutable_labels() = request.labels();
  switch (request.origin_case()) {
    case procwarp::v1::CreateThreadRequest::kLaunch:
      if (request.launch().has_namespaces()) {
        *agent.mutable_namespaces() = request.launch().namespaces();
      }
      break;
    case procwarp::v1::CreateThreadRequest::kClone:
      if (request.clone().has_namespaces()) {
        *agent.mutable_namespaces() = request.clone().namespaces();
      }
      agent.set_parent_thread_id(request.clone().parent_thread_id());
      agent.set_share_fd_table(request.clone().share_fd_table());
      break;
    default:  // no origin: already in this form
      if (request.has_namespaces()) {
        *agent.mutable_namespaces() = request.namespaces();
      }
      agent.set_parent_thread_id(request.parent_thread_id());
      agent.set_share_fd_table(request.share_fd_table());
      break;
  }
  return agent;
}

procwarp::v1::AttachThreadRequest ToAttachThreadRequest(
    const procwarp::v1::CreateThreadRequest& request) {
  procwarp::v1::AttachThreadRequest attach;
  attach.set_pid(request.attach().pid());
  if (request.attach().has_tid()) attach.set_tid(request.attach().tid());
  attach.set_stop_all_threads(request.attach().stop_all_threads());
  attach.set_persistent(request.persistent());
  *attach.mutable_labels() = request.labels();
  return attach;
}

absl::Status CheckAttachThreadRequest(
    const procwarp::v1::AttachThreadRequest& request) {
  RETURN_IF_ERROR(CheckLabelBytes(request.labels(), "AttachThread"));
  return CheckAttachTarget(request.pid(), request.has_tid(), request.tid(),
                           "AttachThread");
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
