// ProcessesService: the gRPC face of the ProcessTable (spawn, wait, signal,
// list, attach, events...). Validation and authorisation live in the table
// and the spawn plan; this layer maps requests and streams onto them.
#ifndef PROCWARP_DAEMON_PROCESS_PROCESSES_SERVICE_H_
#define PROCWARP_DAEMON_PROCESS_PROCESSES_SERVICE_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "daemon/process/event_bus.h"
#include "daemon/process/process_table.h"
#include "daemon/server/caller_context.h"
#include "daemon/server/slot_limiter.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"

namespace procwarp {

class ProcessesService final : public procwarp::v1::Processes::Service {
 public:
  // `record_bytes` (null: no limit) counts the bytes of argv and labels each
  // identity's process records hold; a record's share is given back when it
  // is removed.
  ProcessesService(ProcessTable* table, EventBus* events,
                   const CallerResolver* callers,
                   SlotLimiter* record_bytes = nullptr)
      : table_(table),
        events_(events),
        callers_(callers),
        record_bytes_(record_bytes) {}

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
  SlotLimiter* record_bytes_;
  // What each spawned record holds of record_bytes_, by process id.
  absl::Mutex charges_mu_;
  std::map<std::string, SlotLimiter::Slot, std::less<>> charges_
      ABSL_GUARDED_BY(charges_mu_);
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_PROCESSES_SERVICE_H_
