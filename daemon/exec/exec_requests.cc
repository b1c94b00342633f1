// See exec_requests.h.
#include "daemon/exec/exec_requests.h"

#include "absl/strings/str_cat.h"
#include "daemon/util/status_macros.h"

namespace procwarp::exec {
namespace {

namespace pb = procwarp::exec::v1;

absl::Status CheckHandleId(absl::string_view id, absl::string_view field) {
  if (id.empty() || id.size() > kMaxHandleId) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": required, at most ", kMaxHandleId, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTarget(const pb::Target& target) {
  switch (target.target_case()) {
    case pb::Target::kPid:
      if (target.pid() <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("target pid ", target.pid(), " is not a process id"));
      }
      return absl::OkStatus();
    case pb::Target::kThreadId:
      return CheckHandleId(target.thread_id(), "target.thread_id");
    default:
      return absl::InvalidArgumentError("target: set pid or thread_id");
  }
}

absl::Status CheckText(absl::string_view text, absl::string_view field) {
  if (text.empty() || text.size() >= kMaxSpec ||
      text.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be 1..", kMaxSpec - 1, " bytes without NUL"));
  }
  return absl::OkStatus();
}

absl::Status CheckCallRequest(const pb::CallRequest& request) {
  RETURN_IF_ERROR(CheckTarget(request.target()));
  RETURN_IF_ERROR(CheckText(request.function(), "function"));
  if (static_cast<size_t>(request.args_size()) > kMaxCallArgs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a remote call takes at most ", kMaxCallArgs, " arguments, got ",
        request.args_size()));
  }
  return absl::OkStatus();
}

absl::Status CheckInjectLibraryRequest(const pb::InjectLibraryRequest& request) {
  RETURN_IF_ERROR(CheckTarget(request.target()));
  RETURN_IF_ERROR(CheckText(request.path(), "path"));
  if (request.path()[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "library path must be absolute (got \"", request.path(), "\")"));
  }
  return absl::OkStatus();
}

absl::Status CheckUnloadLibraryRequest(const pb::UnloadLibraryRequest& request) {
  return CheckHandleId(request.handle(), "handle");
}

absl::Status CheckRunPythonRequest(const pb::RunPythonRequest& request,
                                   const Identity& caller) {
  RETURN_IF_ERROR(CheckTarget(request.target()));
  if (request.code().empty() || request.code().size() > kMaxPythonCode) {
    return absl::InvalidArgumentError(
        absl::StrCat("code must be 1..", kMaxPythonCode, " bytes"));
  }
  if (request.mode() != pb::PYTHON_MODE_UNSPECIFIED &&
      request.mode() != pb::PYTHON_MODE_EXEC && request.mode() != pb::PYTHON_MODE_EVAL) {
    return absl::InvalidArgumentError(absl::StrCat("unknown mode ", request.mode()));
  }
  if (request.no_wait() && request.mode() == pb::PYTHON_MODE_EVAL) {
    return absl::InvalidArgumentError("no_wait has no value to return: use exec mode");
  }
  if (request.override_opt_out() && !caller.admin) {
    return absl::PermissionDeniedError(
        "override_opt_out is for admins (root or the admin group) only");
  }
  return absl::OkStatus();
}

absl::Status CheckPreflightRequest(const pb::PreflightRequest& request) {
  if (request.has_pid() && request.pid() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pid ", request.pid(), " is not a process id"));
  }
  return absl::OkStatus();
}

}  // namespace procwarp::exec
