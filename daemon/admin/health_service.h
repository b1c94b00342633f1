// HealthService: the standard grpc.health.v1.Health, served synchronously.
//
// Why not gRPC's built-in one (grpc::EnableDefaultHealthCheckService): in
// gRPC 1.51 it is written against the callback API, and one callback service
// makes the server start a callback completion queue whose own thread then
// polls every connection too. Requests read there are handed over to the
// sync handler threads, one more thread wake-up per call: it cost the daemon
// ~10-25 us per unary call on the 2-vCPU VMs it is measured on (bench/).
#ifndef PROCWARP_DAEMON_ADMIN_HEALTH_SERVICE_H_
#define PROCWARP_DAEMON_ADMIN_HEALTH_SERVICE_H_

#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "daemon/server/caller_context.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"

namespace procwarp {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  // `services`: the fully qualified names of the services this daemon serves
  // (each reported SERVING, as is the server as a whole, "").
  HealthService(std::set<std::string> services, const CallerResolver* callers)
      : services_(std::move(services)), callers_(callers) {}

  // Everything becomes NOT_SERVING (the daemon is stopping); open Watch
  // streams are told and then ended with UNAVAILABLE.
  void SetShuttingDown();

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::Status Watch(
      grpc::ServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request,
      grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer)
      override;

 private:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;
  ServingStatus StatusOf(const std::string& service) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::set<std::string> services_;
  const CallerResolver* callers_;
  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar changed_;  // signalled when shutting_down_ is set
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_ADMIN_HEALTH_SERVICE_H_
