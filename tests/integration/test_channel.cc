#include "tests/integration/test_channel.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/create_channel_posix.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace procwarp::testing {

std::shared_ptr<grpc::Channel> NewUnixChannel(const std::string& socket_path) {
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel("unix:" + socket_path,
                                   grpc::InsecureChannelCredentials(), args);
}

CuttableChannel::CuttableChannel(const std::string& socket_path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (fd < 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::fprintf(stderr, "connect(%s): %s\n", socket_path.c_str(),
                 std::strerror(errno));
    std::abort();
  }
  raw_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  // gRPC owns `fd` from here.
  channel_ = grpc::CreateInsecureChannelFromFd("", fd);
}

CuttableChannel::~CuttableChannel() {
  if (raw_ >= 0) close(raw_);
}

void CuttableChannel::Cut() const { shutdown(raw_, SHUT_RDWR); }

std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(
      static_cast<absl::StatusCode>(status.error_code()));
}

}  // namespace procwarp::testing
