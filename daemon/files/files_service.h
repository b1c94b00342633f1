// FilesService: file descriptors of agent threads: list (with fdinfo),
// close, dup, transfer between threads, close-on-exec control.
#ifndef PROCWARP_DAEMON_FILES_FILES_SERVICE_H_
#define PROCWARP_DAEMON_FILES_FILES_SERVICE_H_

#include "daemon/server/caller_context.h"
#include "daemon/thread/thread_table.h"
#include "proto/procwarp/v1/files.grpc.pb.h"

namespace procwarp {

class FilesService final : public procwarp::v1::Files::Service {
 public:
  FilesService(ThreadTable* table, const CallerBindings* callers)
      : table_(table), callers_(callers) {}

  grpc::Status ListFds(grpc::ServerContext* context,
                       const procwarp::v1::ListFdsRequest* request,
                       procwarp::v1::ListFdsResponse* response) override;
  grpc::Status CloseFd(grpc::ServerContext* context,
                       const procwarp::v1::CloseFdRequest* request,
                       procwarp::v1::CloseFdResponse* response) override;
  grpc::Status DupFd(grpc::ServerContext* context,
                     const procwarp::v1::DupFdRequest* request,
                     procwarp::v1::DupFdResponse* response) override;
  grpc::Status TransferFd(grpc::ServerContext* context,
                          const procwarp::v1::TransferFdRequest* request,
                          procwarp::v1::TransferFdResponse* response) override;
  grpc::Status SetCloexec(grpc::ServerContext* context,
                          const procwarp::v1::SetCloexecRequest* request,
                          procwarp::v1::SetCloexecResponse* response) override;

 private:
  ThreadTable* table_;
  const CallerBindings* callers_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_FILES_FILES_SERVICE_H_
