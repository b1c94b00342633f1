// Channel setup shared by Client and its handles (see connection.h).
#include "client/cc/connection.h"

#include <grpcpp/create_channel_posix.h>

#include <utility>

namespace procwarp::internal {

Connection::Connection(std::string path, DaemonSocket socket)
    : socket_path(std::move(path)),
      remote(false),
      peer(socket.peer),
      // Our own connected fd, not a "unix:" target: gRPC would connect (and
      // later reconnect) by itself, to whatever listens at the path then,
      // without the peer check.
      channel(grpc::CreateInsecureChannelFromFd("unix:" + socket_path,
                                                socket.fd.Release())),
      admin(v1::Admin::NewStub(channel)),
      processes(v1::Processes::NewStub(channel)),
      threads(v1::Threads::NewStub(channel)),
      memory(v1::Memory::NewStub(channel)),
      files(v1::Files::NewStub(channel)),
      exec(exec::v1::Exec::NewStub(channel)),
      snapshots(snapshots::v1::Snapshots::NewStub(channel)) {}

Connection::Connection(std::string target,
                       std::shared_ptr<grpc::Channel> tls_channel)
    : socket_path(std::move(target)),
      remote(true),
      channel(std::move(tls_channel)),
      admin(v1::Admin::NewStub(channel)),
      processes(v1::Processes::NewStub(channel)),
      threads(v1::Threads::NewStub(channel)),
      memory(v1::Memory::NewStub(channel)),
      files(v1::Files::NewStub(channel)) {}

void SetTimeout(grpc::ClientContext& context, absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace procwarp::internal
