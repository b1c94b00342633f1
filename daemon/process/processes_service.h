// ProcessesService: the gRPC face of the ProcessTable (spawn, wait, signal,
// list, attach, events...). Validation and authorisation live in the table
// and the spawn plan; this layer maps requests and streams onto them.
#ifndef PROCWARP_DAEMON_PROCESS_PROCESSES_SERVICE_H_
#define PROCWARP_DAEMON_PROCESS_PROCESSES_SERVICE_H_

#include "daemon/process/event_bus.h"
#include "daemon/process/process_table.h"
#include "daemon/server/caller_context.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"

namespace procwarp {

class ProcessesService final : public procwarp::v1::Processes::Service {
 public:
  ProcessesService(ProcessTable* table, EventBus* events,
                   const CallerResolver* callers)
      : table_(table), events_(events), callers_(callers) {}

  grpc::Status Spawn(grpc::ServerContext* context,
                     const procwarp::v1::SpawnRequest* request,
                     procwarp::v1::SpawnResponse* response) override;
  grpc::Status Wait(grpc::ServerContext* context,
                    const procwarp::v1::WaitRequest* request,
                    procwarp::v1::WaitResponse* response) override;
  grpc::Status Signal(grpc::ServerContext* context,
                      const procwarp::v1::SignalRequest* request,
                      procwarp::v1::SignalResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context,
                   const procwarp::v1::GetProcessRequest* request,
                   procwarp::v1::GetProcessResponse* response) override;
  grpc::Status List(grpc::ServerContext* context,
                    const procwarp::v1::ListProcessesRequest* request,
                    procwarp::v1::ListProcessesResponse* response) override;
  grpc::Status Remove(grpc::ServerContext* context,
                      const procwarp::v1::RemoveProcessRequest* request,
                      procwarp::v1::RemoveProcessResponse* response) override;
  grpc::Status Attach(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<procwarp::v1::AttachResponse,
                               procwarp::v1::AttachRequest>* stream) override;
  grpc::Status ResizePty(grpc::ServerContext* context,
                         const procwarp::v1::ResizePtyRequest* request,
                         procwarp::v1::ResizePtyResponse* response) override;
  grpc::Status Events(
      grpc::ServerContext* context, const procwarp::v1::EventsRequest* request,
      grpc::ServerWriter<procwarp::v1::ProcessEvent>* writer) override;

 private:
  ProcessTable* table_;
  EventBus* events_;
  const CallerResolver* callers_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_PROCESSES_SERVICE_H_
