// See health_service.h.
#include "daemon/admin/health_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

using grpc::health::v1::HealthCheckResponse;

// How often a Watch with nothing to report checks whether it was cancelled
// (the sync API has no wake-up for that).
constexpr absl::Duration kWatchCancelPoll = absl::Milliseconds(200);

}  // namespace

void HealthService::SetShuttingDown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  changed_.SignalAll();
}

HealthService::ServingStatus HealthService::StatusOf(
    const std::string& service) const {
  if (!service.empty() && services_.count(service) == 0) {
    return HealthCheckResponse::SERVICE_UNKNOWN;
  }
  return shutting_down_ ? HealthCheckResponse::NOT_SERVING
                        : HealthCheckResponse::SERVING;
}

grpc::Status HealthService::Check(
    grpc::ServerContext* context,
    const grpc::health::v1::HealthCheckRequest* request,
    HealthCheckResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity&) -> absl::Status {
    absl::MutexLock lock(&mu_);
    ServingStatus status = StatusOf(request->service());
    if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
      return absl::NotFoundError(
          absl::StrCat("no service '", request->service(), "' here"));
    }
    response->set_status(status);
    return absl::OkStatus();
  });
}

grpc::Status HealthService::Watch(
    grpc::ServerContext* context,
    const grpc::health::v1::HealthCheckRequest* request,
    grpc::ServerWriter<HealthCheckResponse>* writer) {
  // A Watch holds a server thread for as long as it is open: a stream slot.
  return WithStreamCaller(*callers_, context, [&](const Identity&) -> absl::Status {
    bool sent_any = false;
    ServingStatus sent = HealthCheckResponse::UNKNOWN;
    absl::MutexLock lock(&mu_);
    while (!context->IsCancelled()) {
      ServingStatus now = StatusOf(request->service());
      if (!sent_any || now != sent) {
        HealthCheckResponse response;
        response.set_status(now);
        mu_.Unlock();
        bool written = writer->Write(response);
        mu_.Lock();
        if (!written) break;
        sent_any = true;
        sent = now;
        continue;  // it may have changed again while we wrote
      }
      // The caller has the current status. When that is the final one,
      // ending the stream lets the server's shutdown finish without waiting
      // out its grace period for this call.
      if (shutting_down_) {
        return absl::UnavailableError("procwarpd is shutting down");
      }
      changed_.WaitWithTimeout(&mu_, kWatchCancelPoll);
    }
    return absl::CancelledError("Watch ended by the caller");
  });
}

}  // namespace procwarp
