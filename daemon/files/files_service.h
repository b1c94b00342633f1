// FilesService: file descriptors of threads (any backend, through the
// Thread interface of daemon/thread/thread.h): list (with fdinfo),
// close, dup, transfer between threads, close-on-exec control, and export
// to / import from the local client (through FdSideChannel).
#ifndef PROCWARP_DAEMON_FILES_FILES_SERVICE_H_
#define PROCWARP_DAEMON_FILES_FILES_SERVICE_H_

#include "daemon/files/fd_side_channel.h"
#include "daemon/server/caller_context.h"
#include "daemon/thread/thread_table.h"
#include "proto/procwarp/v1/files.grpc.pb.h"

namespace procwarp {

class FilesService final : public procwarp::v1::Files::Service {
 public:
  // `side_channel` null: ExportFd/ImportFd are FAILED_PRECONDITION.
  FilesService(ThreadTable* table, const CallerResolver* callers,
               FdSideChannel* side_channel = nullptr)
      : table_(table), callers_(callers), side_channel_(side_channel) {}

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
  grpc::Status ExportFd(grpc::ServerContext* context,
                        const procwarp::v1::ExportFdRequest* request,
                        procwarp::v1::ExportFdResponse* response) override;
  grpc::Status ImportFd(grpc::ServerContext* context,
                        const procwarp::v1::ImportFdRequest* request,
                        procwarp::v1::ImportFdResponse* response) override;

 private:
  // FAILED_PRECONDITION unless fds can be exchanged with the caller of
  // `session`.
  absl::Status CheckSideChannel(const Session& session,
                                absl::string_view call) const;

  ThreadTable* table_;
  const CallerResolver* callers_;
  FdSideChannel* side_channel_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_FILES_FILES_SERVICE_H_
