// The gRPC plumbing every integration test and peer program shares: a
// channel that is its own connection, deadline-bound contexts, and status
// codes by name for the lines peers print.
#ifndef PROCWARP_TESTS_INTEGRATION_TEST_CHANNEL_H_
#define PROCWARP_TESTS_INTEGRATION_TEST_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace procwarp::testing {

// A channel to the daemon's unix socket on a connection of its own (no
// shared subchannel pool): tests about connections and identities need real,
// separate connections.
std::shared_ptr<grpc::Channel> NewUnixChannel(const std::string& socket_path);

// A channel over mutual TLS to `address` (HOST:PORT), on a connection of its
// own, trusting the CA bundle `ca_file` and presenting the client
// certificate `cert_file` with `key_file` (none when both are empty). The
// files are read now, so a caller can drop its privileges afterwards.
std::shared_ptr<grpc::Channel> NewTlsChannel(const std::string& address,
                                             const std::string& ca_file,
                                             const std::string& cert_file,
                                             const std::string& key_file);

// A channel on a connection the client made itself, keeping a second fd of
// the socket: Cut() shuts the connection down under whatever calls are in
// flight (the daemon sees the hang-up, closes its fd and may reuse the
// number). Dies (abort) if the socket cannot be reached.
class CuttableChannel {
 public:
  explicit CuttableChannel(const std::string& socket_path);
  ~CuttableChannel();
  CuttableChannel(const CuttableChannel&) = delete;
  CuttableChannel& operator=(const CuttableChannel&) = delete;

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  void Cut() const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  int raw_ = -1;
};

// Deadline-bound ClientContext.
std::unique_ptr<grpc::ClientContext> Ctx(
    absl::Duration timeout = absl::Seconds(30));

// "PERMISSION_DENIED", "OK", ...
std::string CodeName(const grpc::Status& status);

}  // namespace procwarp::testing

#endif  // PROCWARP_TESTS_INTEGRATION_TEST_CHANNEL_H_
