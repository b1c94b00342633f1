// See echo_server.h.
#include "bench/echo_server.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/server_builder.h"

extern char** environ;

namespace procwarp::bench {
namespace {

constexpr char kFlag[] = "--echo_server=";

int ServeEcho(const std::string& socket_path) {
  EchoService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path,
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server) return 1;
  server->Wait();
  return 0;
}

}  // namespace

grpc::Status EchoService::Echo(grpc::ServerContext*, const EchoRequest* request,
                               EchoResponse* response) {
  response->set_payload(request->payload());
  return grpc::Status::OK;
}

grpc::Status EchoService::Stream(grpc::ServerContext*,
                                 const StreamRequest* request,
                                 grpc::ServerWriter<StreamChunk>* writer) {
  const uint64_t chunk_bytes = std::max<uint64_t>(request->chunk_bytes(), 1);
  StreamChunk chunk;
  for (uint64_t done = 0; done < request->total_bytes();) {
    const uint64_t n = std::min(chunk_bytes, request->total_bytes() - done);
    chunk.set_offset(done);
    // Filled anew each time, as the daemon fills each chunk from memory.
    chunk.mutable_data()->assign(n, 'x');
    if (!writer->Write(chunk)) break;  // the client went away
    done += n;
  }
  return grpc::Status::OK;
}

int MaybeServeEcho(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], kFlag, strlen(kFlag)) == 0) {
      return ServeEcho(argv[i] + strlen(kFlag));
    }
  }
  return -1;
}

std::string SelfPath() {
  char path[4096];
  ssize_t len = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (len <= 0) return "/proc/self/exe";
  return std::string(path, len);
}

EchoServer::EchoServer(const std::string& self, const std::string& dir) {
  std::string socket_path = dir + "/echo.sock";
  std::string mode = kFlag + socket_path;
  char* argv[] = {const_cast<char*>(self.c_str()), mode.data(), nullptr};
  posix_spawn(&pid_, argv[0], nullptr, nullptr, argv, environ);
  auto channel = grpc::CreateChannel("unix:" + socket_path,
                                     grpc::InsecureChannelCredentials());
  channel->WaitForConnected(
      absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  stub_ = Echo::NewStub(channel);
}

EchoServer::~EchoServer() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
}

void EchoServer::Call() const {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  EchoRequest request;
  EchoResponse response;
  stub_->Echo(&context, request, &response);
}

Paired EchoServer::MeasureAgainst(pid_t server, int n,
                                  const std::function<void()>& measured) const {
  return MeasurePaired(
      n, [this] { Call(); }, measured,
      [server] { return ProcessCpuMicros(server); },
      [this] { return ProcessCpuMicros(pid_); });
}

}  // namespace procwarp::bench
