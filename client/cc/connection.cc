// Channel setup shared by Client and its handles (see connection.h).
#include "client/cc/connection.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <utility>

namespace procwarp::internal {

Connection::Connection(std::string path)
    : socket_path(std::move(path)),
      channel(grpc::CreateChannel("unix:" + socket_path,
                                  grpc::InsecureChannelCredentials())),
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
