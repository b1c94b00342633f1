// The bare-gRPC baseline shared by the benchmarks: an Echo service that does
// nothing, run as a separate process on a unix socket (like the daemon), and
// a client stub connected to it.
#ifndef PROCWARP_BENCH_ECHO_SERVER_H_
#define PROCWARP_BENCH_ECHO_SERVER_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "bench/bench_util.h"
#include "bench/echo.grpc.pb.h"

namespace procwarp::bench {

// The Echo service itself: answers with the request's payload, or streams
// filler bytes.
class EchoService final : public Echo::Service {
  grpc::Status Echo(grpc::ServerContext*, const EchoRequest* request,
                    EchoResponse* response) override;
  grpc::Status Stream(grpc::ServerContext*, const StreamRequest* request,
                      grpc::ServerWriter<StreamChunk>* writer) override;
};

// The flag that makes a benchmark binary serve Echo instead of running:
// `--echo_server=SOCKET`. Call first thing in main(): returns the exit code
// to use when argv asked for the server, -1 otherwise.
int MaybeServeEcho(int argc, char** argv);

// The absolute path of the running binary (to re-run it as the server).
std::string SelfPath();

// Starts `self --echo_server=DIR/echo.sock` and connects to it; stops it
// (SIGTERM, reaped) on destruction.
class EchoServer {
 public:
  EchoServer(const std::string& self, const std::string& dir);
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  pid_t pid() const { return pid_; }

  // One empty unary Echo call.
  void Call() const;

  // `measured` against Call() (MeasurePaired), counting the CPU time of the
  // process `server` (e.g. procwarpd) per measured call and the echo
  // server's per echo.
  Paired MeasureAgainst(pid_t server, int n,
                        const std::function<void()>& measured) const;

 private:
  pid_t pid_ = -1;
  std::unique_ptr<Echo::Stub> stub_;
};

}  // namespace procwarp::bench

#endif  // PROCWARP_BENCH_ECHO_SERVER_H_
