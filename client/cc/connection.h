// Internal to //client/cc:client. The channel and stubs shared by a Client and
// every Process, Thread, Pointer and FileDescriptor handle made from it, so
// handles stay usable after the Client object is gone.
#ifndef PROCWARP_CLIENT_CC_CONNECTION_H_
#define PROCWARP_CLIENT_CC_CONNECTION_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "absl/time/time.h"
#include "client/cc/daemon_peer.h"
#include "proto/procwarp/exec/v1/exec.grpc.pb.h"
#include "proto/procwarp/snapshots/v1/snapshots.grpc.pb.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"

namespace procwarp::internal {

// Deadline for calls that should answer promptly (everything except Wait and
// the streams): a wedged daemon then gives DEADLINE_EXCEEDED, not a hang.
inline constexpr absl::Duration kShortCallTimeout = absl::Seconds(30);
// Deadline for Exec calls, which run code in the target: the daemon caps one
// operation at its config's exec_operation_timeout_ms (60 s by default)
// anyway.
inline constexpr absl::Duration kExecCallTimeout = absl::Seconds(60);

struct Connection {
  // Runs gRPC over `socket`, a connection to `path` whose peer passed the
  // trust check. gRPC owns the socket from here on and never reconnects: a
  // lost connection fails every later call with UNAVAILABLE.
  Connection(std::string path, DaemonSocket socket);
  // A remote daemon over `channel` (mutual TLS; `target` is "tls://...").
  Connection(std::string target, std::shared_ptr<grpc::Channel> tls_channel);

  const std::string socket_path;
  // Over TCP to another host: no direct memory copies, no fd side socket.
  const bool remote;
  // Who serves socket_path (local only). The fd side socket must be served
  // by the same uid.
  const PeerCredentials peer;
  const std::shared_ptr<grpc::Channel> channel;
  const std::unique_ptr<v1::Admin::Stub> admin;
  const std::unique_ptr<v1::Processes::Stub> processes;
  const std::unique_ptr<v1::Threads::Stub> threads;
  const std::unique_ptr<v1::Memory::Stub> memory;
  const std::unique_ptr<v1::Files::Stub> files;
  const std::unique_ptr<exec::v1::Exec::Stub> exec;
  const std::unique_ptr<snapshots::v1::Snapshots::Stub> snapshots;
};

// Sets `context`'s deadline `timeout` from now; an infinite timeout leaves the
// call without a deadline.
void SetTimeout(grpc::ClientContext& context, absl::Duration timeout);

// Exec.Call and Exec.InjectLibrary on `target` (a pid or an attached thread):
// shared by Client (by pid) and Thread (its own id).
absl::StatusOr<exec::v1::CallResponse> ExecCall(
    const Connection& connection, const exec::v1::Target& target,
    const std::string& function, const std::vector<uint64_t>& args);
absl::StatusOr<exec::v1::InjectLibraryResponse> ExecInjectLibrary(
    const Connection& connection, const exec::v1::Target& target,
    const std::string& path);

}  // namespace procwarp::internal

#endif  // PROCWARP_CLIENT_CC_CONNECTION_H_
