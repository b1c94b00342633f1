// See process_requests.h.
#include "daemon/process/process_requests.h"

#include <signal.h>

#include "absl/strings/str_cat.h"
#include "daemon/server/record_bounds.h"
#include "daemon/util/status_macros.h"

namespace procwarp {

absl::Status CheckSpawnRequest(const procwarp::v1::SpawnRequest& request) {
  RETURN_IF_ERROR(CheckLabelBytes(request.labels(), "Spawn"));
  return CheckArgvBytes(request.argv(), "Spawn");
}

absl::Status CheckSignalRequest(const procwarp::v1::SignalRequest& request) {
  if (request.signal() < 0 || request.signal() > SIGRTMAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        "signal ", request.signal(), " is out of range (0..", SIGRTMAX, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckResizePtyRequest(const procwarp::v1::ResizePtyRequest& request) {
  if (request.size().rows() == 0 || request.size().cols() == 0 ||
      request.size().rows() > 0xffff || request.size().cols() > 0xffff) {
    return absl::InvalidArgumentError(
        "window size needs rows and cols between 1 and 65535");
  }
  return absl::OkStatus();
}

absl::Status CheckListProcessesRequest(
    const procwarp::v1::ListProcessesRequest& request, const Identity& caller) {
  if (request.all() && !caller.admin) {
    return absl::PermissionDeniedError(
        "listing every user's processes needs root or the admin group");
  }
  return absl::OkStatus();
}

}  // namespace procwarp
