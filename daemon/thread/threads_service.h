// ThreadsService: the gRPC face of the ThreadTable: create agent threads,
// run syscalls in any thread (one at a time, or pipelined batches over
// Execute) through the Thread interface (thread.h), end and list them, and
// turn agent threads into managed processes by execve (Exec).
#ifndef PROCWARP_DAEMON_THREAD_THREADS_SERVICE_H_
#define PROCWARP_DAEMON_THREAD_THREADS_SERVICE_H_

#include "daemon/process/process_table.h"
#include "daemon/server/caller_context.h"
#include "daemon/thread/thread_table.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"

namespace procwarp {

class ThreadsService final : public procwarp::v1::Threads::Service {
 public:
  // Exec hands threads over to `processes`.
  ThreadsService(ThreadTable* table, ProcessTable* processes,
                 const CallerResolver* callers)
      : table_(table), processes_(processes), callers_(callers) {}

  grpc::Status CreateThread(grpc::ServerContext* context,
                            const procwarp::v1::CreateThreadRequest* request,
                            procwarp::v1::CreateThreadResponse* response) override;
  grpc::Status AttachThread(grpc::ServerContext* context,
                            const procwarp::v1::AttachThreadRequest* request,
                            procwarp::v1::AttachThreadResponse* response) override;
  grpc::Status Syscall(grpc::ServerContext* context,
                       const procwarp::v1::SyscallRequest* request,
                       procwarp::v1::SyscallResponse* response) override;
  grpc::Status Execute(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<procwarp::v1::ExecuteResponse,
                               procwarp::v1::ExecuteRequest>* stream) override;
  grpc::Status ExitThread(grpc::ServerContext* context,
                          const procwarp::v1::ExitThreadRequest* request,
                          procwarp::v1::ExitThreadResponse* response) override;
  grpc::Status ListThreads(grpc::ServerContext* context,
                           const procwarp::v1::ListThreadsRequest* request,
                           procwarp::v1::ListThreadsResponse* response) override;
  grpc::Status GetThread(grpc::ServerContext* context,
                         const procwarp::v1::GetThreadRequest* request,
                         procwarp::v1::GetThreadResponse* response) override;
  grpc::Status Exec(grpc::ServerContext* context,
                    const procwarp::v1::ExecRequest* request,
                    procwarp::v1::ExecResponse* response) override;

 private:
  // AttachThread, and CreateThread with origin attach: one code path.
  // `request` passed CheckAttachThreadRequest.
  absl::StatusOr<procwarp::v1::ThreadInfo> Attach(
      const Session& session, const procwarp::v1::AttachThreadRequest& request);

  ThreadTable* table_;
  ProcessTable* processes_;
  const CallerResolver* callers_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_THREADS_SERVICE_H_
