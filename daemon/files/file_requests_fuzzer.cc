// Fuzzes the checks of every Files request (file_requests.h): each ends in
// OK or a client error with a message, and what they let through names fd
// numbers that can exist. See docs/fuzzing.md.
#include <cstddef>
#include <cstdint>

#include "daemon/files/file_requests.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "tools/fuzz/request_fuzz.h"

namespace procwarp {
namespace {

using google::protobuf::Message;
namespace v1 = procwarp::v1;

// Runs `check` on the request as its type `Request` and, when it passes,
// asserts `valid` of it.
template <typename Request, typename Check, typename Valid>
RequestCheck Checked(Check check, Valid valid) {
  return [check, valid](const Message& message) {
    const auto& request = static_cast<const Request&>(message);
    absl::Status status = check(request);
    AssertClientStatus(status);
    if (status.ok()) FuzzAssert(valid(request), "an fd number that cannot be");
  };
}

}  // namespace
}  // namespace procwarp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace procwarp;
  static const RequestChecks* checks = new RequestChecks{
      // A thread id only.
      {"ListFds", NothingToCheck},
      {"CloseFd", Checked<v1::CloseFdRequest>(
                      CheckCloseFdRequest,
                      [](const v1::CloseFdRequest& r) { return r.fd() >= 0; })},
      {"DupFd", Checked<v1::DupFdRequest>(
                    CheckDupFdRequest,
                    [](const v1::DupFdRequest& r) {
                      return r.fd() >= 0 &&
                             (!r.has_target_fd() || r.target_fd() >= 0);
                    })},
      {"TransferFd", Checked<v1::TransferFdRequest>(
                         CheckTransferFdRequest,
                         [](const v1::TransferFdRequest& r) {
                           return r.source_fd() >= 0 &&
                                  (!r.has_target_fd() || r.target_fd() >= 0);
                         })},
      {"SetCloexec",
       Checked<v1::SetCloexecRequest>(
           CheckSetCloexecRequest,
           [](const v1::SetCloexecRequest& r) { return r.fd() >= 0; })},
      {"ExportFd", Checked<v1::ExportFdRequest>(
                       CheckExportFdRequest,
                       [](const v1::ExportFdRequest& r) { return r.fd() >= 0; })},
      {"ImportFd",
       Checked<v1::ImportFdRequest>(
           CheckImportFdRequest,
           [](const v1::ImportFdRequest& r) { return r.target_fd() >= -1; })},
  };
  FuzzServiceRequest(
      *procwarp::v1::ListFdsRequest::descriptor()->file()->FindServiceByName(
          "Files"),
      *checks, data, size);
  return 0;
}
