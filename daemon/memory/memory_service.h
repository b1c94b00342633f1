// MemoryService: pointers into threads' memory (any backend, through the
// Thread interface of daemon/thread/thread.h): allocate (mmap in the thread),
// bounds-checked reads and writes (unary and streamed), free, and the
// thread's memory map.
#ifndef PROCWARP_DAEMON_MEMORY_MEMORY_SERVICE_H_
#define PROCWARP_DAEMON_MEMORY_MEMORY_SERVICE_H_

#include <string>
#include <vector>

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
  // Checks and performs one write; adds to response->written.
  absl::Status WriteOne(const Identity& caller,
                        const procwarp::v1::WriteMemoryRequest& request,
                        procwarp::v1::WriteMemoryResponse* response);

  ThreadTable* table_;
  const CallerResolver* callers_;
};

// Parses the text of /proc/PID/maps.
absl::StatusOr<std::vector<procwarp::v1::Mapping>> ParseMaps(
    absl::string_view text);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_MEMORY_MEMORY_SERVICE_H_
