// See tls_harness.h.
#include "tests/integration/tls_harness.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "tests/integration/test_channel.h"

namespace procwarp::testing {
namespace {

absl::StatusOr<std::string> RunScript(std::vector<std::string> args) {
  args.insert(args.begin(), RunfilePath("deploy/tls/procwarp-tls.sh"));
  RunResult r = RunProgram(args);
  if (r.exit_code != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(args, " "),
                                            " failed: ", r.out));
  }
  return r.out;
}

}  // namespace

absl::StatusOr<TlsCertificates> TlsCertificates::Make(
    const std::string& dir, const std::vector<std::string>& server_names) {
  TlsCertificates certs;
  certs.dir_ = dir;
  certs.server_names_ = server_names;
  absl::StatusOr<std::string> ca = RunScript({"ca", dir});
  if (!ca.ok()) return ca.status();
  if (absl::Status made = certs.RemakeServer({}); !made.ok()) return made;
  return certs;
}

absl::Status TlsCertificates::RemakeServer(const std::vector<std::string>& dates) {
  std::vector<std::string> args;
  if (!dates.empty()) args = {"--dates", dates[0], dates[1]};
  args.insert(args.end(), {"server", dir_});
  args.insert(args.end(), server_names_.begin(), server_names_.end());
  return RunScript(args).status();
}

absl::Status TlsCertificates::AddClient(const std::string& name,
                                        const std::vector<std::string>& mapping,
                                        const std::vector<std::string>& dates) {
  std::vector<std::string> args;
  if (!dates.empty()) args = {"--dates", dates[0], dates[1]};
  args.insert(args.end(), {"client", dir_, name});
  args.insert(args.end(), mapping.begin(), mapping.end());
  absl::StatusOr<std::string> out = RunScript(args);
  if (!out.ok()) return out.status();
  for (absl::string_view line : absl::StrSplit(*out, '\n')) {
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (absl::StartsWith(trimmed, "mappings {")) {
      mappings_.emplace_back(trimmed);
    }
  }
  return absl::OkStatus();
}

absl::Status TlsCertificates::AddStandardClients() {
  for (auto [name, mapping] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"nobody", {"--uid", "65534"}},
           {"admin", {"--admin"}},
           {"stranger", {"--unmapped"}}}) {
    if (absl::Status s = AddClient(name, mapping); !s.ok()) return s;
  }
  return AddClient("expired", {"--uid", "65534"},
                   {"20200101000000Z", "20210101000000Z"});
}

std::string TlsCertificates::MappingsConfig() const {
  return absl::StrJoin(mappings_, "\n");
}

std::string ClientCaBundle(const TlsCertificates& certs) {
  return certs.dir() + "/client-ca.pem";
}

DaemonHarness::Options TlsDaemonOptions(const TlsCertificates& certs,
                                        const std::string& extra_tls,
                                        DaemonHarness::Options base) {
  const std::string config = certs.dir() + "/procwarpd.conf";
  // The daemon's client CA bundle is a copy, so tests can replace it
  // (reload) while clients keep verifying the daemon with ca.pem.
  std::filesystem::copy_file(certs.ca(), ClientCaBundle(certs),
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(config) << "tls {\n  ca_file: \"" << ClientCaBundle(certs)
                        << "\"\n  cert_file: \"" << certs.server_cert()
                        << "\"\n  key_file: \"" << certs.server_key() << "\"\n"
                        << certs.MappingsConfig() << "\n"
                        << extra_tls << "\n}\n";
  base.flags.insert(base.flags.end(),
                    {"--config", config, "--listen_tcp", "127.0.0.1:0",
                     "--listen_tcp", "[::1]:0"});
  return base;
}

std::vector<std::string> TlsAddresses(const DaemonHarness& daemon) {
  procwarp::v1::GetStatusResponse status;
  grpc::Status s = daemon.Admin()->GetStatus(
      Ctx().get(), procwarp::v1::GetStatusRequest(), &status);
  if (!s.ok()) return {};
  return {status.tls_addresses().begin(), status.tls_addresses().end()};
}

std::shared_ptr<grpc::Channel> TlsChannel(const std::string& address,
                                          const TlsCertificates& certs,
                                          const std::string& client) {
  return NewTlsChannel(address, certs.ca(),
                       client.empty() ? "" : certs.cert(client),
                       client.empty() ? "" : certs.key(client));
}

}  // namespace procwarp::testing
