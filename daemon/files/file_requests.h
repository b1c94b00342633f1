// The checks of Files requests that need no thread: pure functions of the
// request, run by each handler before it looks anything up, and fuzzed as
// they are (file_requests_fuzzer.cc). Whether an fd is open is the target's
// answer, not a check.
#ifndef PROCWARP_DAEMON_FILES_FILE_REQUESTS_H_
#define PROCWARP_DAEMON_FILES_FILE_REQUESTS_H_

#include "absl/status/status.h"
#include "proto/procwarp/v1/files.pb.h"

namespace procwarp {

// Each names fd numbers that can exist (>= 0; ImportFd's target may also be
// -1, "any").
absl::Status CheckCloseFdRequest(const procwarp::v1::CloseFdRequest& request);
absl::Status CheckDupFdRequest(const procwarp::v1::DupFdRequest& request);
absl::Status CheckTransferFdRequest(
    const procwarp::v1::TransferFdRequest& request);
absl::Status CheckSetCloexecRequest(
    const procwarp::v1::SetCloexecRequest& request);
absl::Status CheckExportFdRequest(const procwarp::v1::ExportFdRequest& request);
absl::Status CheckImportFdRequest(const procwarp::v1::ImportFdRequest& request);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_FILES_FILE_REQUESTS_H_
