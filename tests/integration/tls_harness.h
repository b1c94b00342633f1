// Certificates and channels for tests of the mutual-TLS listener
// (docs/remote.md). Certificates are made at test time by the deployment
// script itself (deploy/tls/procwarp-tls.sh), so the tests also prove that
// what it makes works.
#ifndef PROCWARP_TESTS_INTEGRATION_TLS_HARNESS_H_
#define PROCWARP_TESTS_INTEGRATION_TLS_HARNESS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {

// Polls `done` until it holds or `limit` passes; returns whether it held.
// For effects with no event to wait on (a reload, a dead peer found by TCP
// keepalive): the limit only stops a hung test, it is not what is tested.
template <typename Predicate>
bool Eventually(Predicate done, absl::Duration limit = absl::Seconds(60)) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return done();
}

class TlsCertificates {
 public:
  // A CA and a server certificate for `server_names` in `dir` (created).
  static absl::StatusOr<TlsCertificates> Make(
      const std::string& dir,
      const std::vector<std::string>& server_names = {"localhost", "127.0.0.1",
                                                      "::1"});

  // Replaces the server certificate and key (same names) with ones valid
  // only from dates[0] to dates[1] (YYYYMMDDHHMMSSZ), as an administrator
  // renewing it would: the files are rewritten in place.
  absl::Status RemakeServer(const std::vector<std::string>& dates);

  // A client certificate `name` signed by this CA; `mapping` is the script's
  // option ("--uid", "65534" / "--admin" / "--unmapped"); `dates` an
  // optional START, END pair (YYYYMMDDHHMMSSZ). Its mapping line is
  // remembered for MappingsConfig().
  absl::Status AddClient(const std::string& name,
                         const std::vector<std::string>& mapping,
                         const std::vector<std::string>& dates = {});

  // The standard clients: "nobody" (uid 65534), "admin" (admin role),
  // "stranger" (no mapping), "expired" (uid 65534, expired in 2021).
  absl::Status AddStandardClients();

  const std::string& dir() const { return dir_; }
  std::string ca() const { return dir_ + "/ca.pem"; }
  std::string server_cert() const { return dir_ + "/server.pem"; }
  std::string server_key() const { return dir_ + "/server.key"; }
  std::string cert(const std::string& client) const {
    return dir_ + "/" + client + ".pem";
  }
  std::string key(const std::string& client) const {
    return dir_ + "/" + client + ".key";
  }
  // The "mappings { ... }" lines the script printed for every client.
  std::string MappingsConfig() const;

 private:
  std::string dir_;
  std::vector<std::string> server_names_;
  std::vector<std::string> mappings_;
};

// The CA bundle the daemon verifies clients with (tls.ca_file): a copy of
// certs.ca() made by TlsDaemonOptions, which tests may replace.
std::string ClientCaBundle(const TlsCertificates& certs);

// Options for a daemon serving TLS on 127.0.0.1 and [::1] (ephemeral ports)
// with `certs`, their mappings, and `extra_tls` inside tls { } (e.g.
// "max_connections: 2"). Writes the config next to the certificates.
DaemonHarness::Options TlsDaemonOptions(const TlsCertificates& certs,
                                        const std::string& extra_tls = "",
                                        DaemonHarness::Options base = {});

// The daemon's TLS addresses (from Admin.GetStatus over its unix socket):
// [0] is 127.0.0.1:PORT, [1] is [::1]:PORT.
std::vector<std::string> TlsAddresses(const DaemonHarness& daemon);

// A new gRPC channel (its own connection) to `address` with client
// certificate `client` of `certs` ("" for none), trusting `certs`' CA.
std::shared_ptr<grpc::Channel> TlsChannel(const std::string& address,
                                          const TlsCertificates& certs,
                                          const std::string& client);

}  // namespace procwarp::testing

#endif  // PROCWARP_TESTS_INTEGRATION_TLS_HARNESS_H_
