// See file_requests.h.
#include "daemon/files/file_requests.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

absl::Status CheckFd(int fd, absl::string_view field) {
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", fd, " is not a file descriptor number"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckCloseFdRequest(const procwarp::v1::CloseFdRequest& request) {
  return CheckFd(request.fd(), "CloseFd: fd");
}

absl::Status CheckDupFdRequest(const procwarp::v1::DupFdRequest& request) {
  RETURN_IF_ERROR(CheckFd(request.fd(), "DupFd: fd"));
  if (request.has_target_fd()) {
    RETURN_IF_ERROR(CheckFd(request.target_fd(), "DupFd: target_fd"));
  }
  return absl::OkStatus();
}

absl::Status CheckTransferFdRequest(
    const procwarp::v1::TransferFdRequest& request) {
  RETURN_IF_ERROR(CheckFd(request.source_fd(), "TransferFd: source_fd"));
  if (request.has_target_fd()) {
    RETURN_IF_ERROR(CheckFd(request.target_fd(), "TransferFd: target_fd"));
  }
  return absl::OkStatus();
}

absl::Status CheckSetCloexecRequest(
    const procwarp::v1::SetCloexecRequest& request) {
  return CheckFd(request.fd(), "SetCloexec: fd");
}

absl::Status CheckExportFdRequest(const procwarp::v1::ExportFdRequest& request) {
  return CheckFd(request.fd(), "ExportFd: fd");
}

absl::Status CheckImportFdRequest(const procwarp::v1::ImportFdRequest& request) {
  if (request.target_fd() < -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ImportFd: target_fd ", request.target_fd(),
        " is neither -1 nor a file descriptor number"));
  }
  return absl::OkStatus();
}

}  // namespace procwarp
