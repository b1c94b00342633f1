// MemoryService: pointers into agent threads' memory: allocate (mmap in the
// thread), bounds-checked reads and writes (unary and streamed), free, and
// the thread's memory map.
#ifndef PROCWARP_DAEMON_MEMORY_MEMORY_SERVICE_H_
#define PROCWARP_DAEMON_MEMORY_MEMORY_SERVICE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "daemon/server/caller_context.h"
#include "daemon/thread/thread_table.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"

namespace procwarp {

class MemoryService final : public procwarp::v1::Memory::Service {
 public:
  MemoryService(ThreadTable* table, const CallerResolver* callers)
      : table_(table), callers_(callers) {}

  grpc::Status Allocate(grpc::ServerContext* context,
                        const procwarp::v1::AllocateRequest* request,
                        procwarp::v1::AllocateResponse* response) override;
  grpc::Status Read(grpc::ServerContext* context,
                    const procwarp::v1::ReadMemoryRequest* request,
                    procwarp::v1::ReadMemoryResponse* response) override;
  grpc::Status ReadStream(
      grpc::ServerContext* context, const procwarp::v1::ReadMemoryRequest* request,
      grpc::ServerWriter<procwarp::v1::ReadMemoryChunk>* writer) override;
  grpc::Status Write(grpc::ServerContext* context,
                     const procwarp::v1::WriteMemoryRequest* request,
                     procwarp::v1::WriteMemoryResponse* response) override;
  grpc::Status WriteStream(
      grpc::ServerContext* context,
      grpc::ServerReader<procwarp::v1::WriteMemoryRequest>* reader,
      procwarp::v1::WriteMemoryResponse* response) override;
  grpc::Status Free(grpc::ServerContext* context,
                    const procwarp::v1::FreeRequest* request,
                    procwarp::v1::FreeResponse* response) override;
  grpc::Status Maps(grpc::ServerContext* context,
                    const procwarp::v1::MapsRequest* request,
                    procwarp::v1::MapsResponse* response) override;
  grpc::Status ReadToClient(grpc::ServerContext* context,
                            const procwarp::v1::DirectMemoryRequest* request,
                            procwarp::v1::DirectMemoryResponse* response) override;
  grpc::Status WriteFromClient(
      grpc::ServerContext* context,
      const procwarp::v1::DirectMemoryRequest* request,
      procwarp::v1::DirectMemoryResponse* response) override;

 private:
  // ReadToClient (to_client) and WriteFromClient.
  absl::Status DirectCopy(const Session& session,
                          const procwarp::v1::DirectMemoryRequest& request,
                          bool to_client,
                          procwarp::v1::DirectMemoryResponse* response);
  // A page in `thread` (mapped on first use) where the iovecs of direct
  // copies are written, since the agent's syscalls take their arguments from
  // its own memory.
  absl::StatusOr<uint64_t> ScratchPage(AgentThread& thread);

  // Checks and performs one write; adds to response->written.
  absl::Status WriteOne(const Identity& caller,
                        const procwarp::v1::WriteMemoryRequest& request,
                        procwarp::v1::WriteMemoryResponse* response);

  ThreadTable* table_;
  const CallerResolver* callers_;
  absl::Mutex scratch_mu_;
  // Thread id -> scratch page address. Ids are never reused, so an entry of
  // a thread that has ended is only a few stale bytes.
  std::map<std::string, uint64_t> scratch_ ABSL_GUARDED_BY(scratch_mu_);
};

// Parses the text of /proc/PID/maps.
absl::StatusOr<std::vector<procwarp::v1::Mapping>> ParseMaps(
    absl::string_view text);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_MEMORY_MEMORY_SERVICE_H_
