#include "tests/integration/test_channel.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

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

std::shared_ptr<grpc::Channel> NewTlsChannel(const std::string& address,
                                             const std::string& ca_file,
                                             const std::string& cert_file,
                                             const std::string& key_file) {
  auto read = [](const std::string& path) {
    if (path.empty()) return std::string();
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = read(ca_file);
  ssl.pem_cert_chain = read(cert_file);
  ssl.pem_private_key = read(key_file);
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
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
