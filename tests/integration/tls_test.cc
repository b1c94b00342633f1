// The mutual-TLS listener (docs/remote.md), against a real daemon serving
// TLS on 127.0.0.1 and [::1] with certificates made by
// deploy/tls/procwarp-tls.sh: identity mapping, every way a client is
// refused (and that it is told why), what only works locally, reloading
// the CA bundle under live streams, the connection bounds, bad input and a
// client vanishing mid-stream. The authorisation cases themselves run over
// both transports in auth_test.cc.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cc/client.h"
#include "client/cc/tls_diagnosis.h"
#include "daemon/util/unique_fd.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/tls_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon(""); }

  void TearDown() override {
    daemon_.reset();
    std::error_code ec;
    std::filesystem::remove_all(certs_.dir(), ec);
  }

  void StartDaemon(const std::string& extra_tls,
                   std::vector<std::string> flags = {}) {
    daemon_.reset();
    if (certs_.dir().empty()) {
      auto certs = TlsCertificates::Make(MakeTempDir());
      ASSERT_TRUE(certs.ok()) << certs.status();
      certs_ = *std::move(certs);
      ASSERT_TRUE(certs_.AddStandardClients().ok());
    }
    DaemonHarness::Options base = DaemonHarness::Options::WithAgent();
    base.flags.insert(base.flags.end(), flags.begin(), flags.end());
    auto d = DaemonHarness::Start(TlsDaemonOptions(certs_, extra_tls, base));
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    addresses_ = TlsAddresses(*daemon_);
    ASSERT_EQ(addresses_.size(), 2u);
  }

  std::string Target(int index = 0) const {
    return "tls://" + addresses_[index];
  }
  TlsOptions Options(const std::string& client) const {
    return {.ca = certs_.ca(),
            .cert = client.empty() ? "" : certs_.cert(client),
            .key = client.empty() ? "" : certs_.key(client)};
  }
  std::string Port() const {
    return addresses_[0].substr(addresses_[0].rfind(':') + 1);
  }

  grpc::Status StatusOver(const std::shared_ptr<grpc::Channel>& channel,
                          procwarp::v1::GetStatusResponse* status) {
    return procwarp::v1::Admin::NewStub(channel)->GetStatus(
        Ctx().get(), procwarp::v1::GetStatusRequest(), status);
  }

  // True when the unix socket still serves root.
  bool StillServing() {
    procwarp::v1::GetStatusResponse status;
    return StatusOver(daemon_->NewChannel(), &status).ok();
  }

  TlsCertificates certs_;
  std::unique_ptr<DaemonHarness> daemon_;
  std::vector<std::string> addresses_;
};

TEST_F(TlsTest, MappedCertificateIsItsUidOverIpv4AndIpv6) {
  for (int i = 0; i < 2; ++i) {
    procwarp::v1::GetStatusResponse status;
    grpc::Status s = StatusOver(TlsChannel(addresses_[i], certs_, "nobody"), &status);
    ASSERT_TRUE(s.ok()) << addresses_[i] << ": " << s.error_message();
    const auto& caller = status.caller();
    EXPECT_EQ(caller.uid(), 65534u);
    EXPECT_EQ(caller.gid(), 65534u);
    EXPECT_FALSE(caller.admin());
    EXPECT_TRUE(caller.remote());
    EXPECT_EQ(caller.pid(), 0);
    EXPECT_EQ(caller.subject(), "CN=nobody");
    EXPECT_THAT(caller.peer_address(),
                StartsWith(i == 0 ? "127.0.0.1:" : "[::1]:"));
    // Non-admins see only their own counts, remote or not.
    EXPECT_EQ(status.clients(), 1);
  }
}

TEST_F(TlsTest, AdminMappingIsRootsIdentity) {
  procwarp::v1::GetStatusResponse status;
  ASSERT_TRUE(StatusOver(TlsChannel(addresses_[0], certs_, "admin"), &status).ok());
  EXPECT_EQ(status.caller().uid(), 0u);
  EXPECT_TRUE(status.caller().admin());
  EXPECT_TRUE(status.caller().remote());
  EXPECT_EQ(status.caller().subject(), "CN=admin");
  EXPECT_EQ(status.tls_addresses_size(), 2);
}

TEST_F(TlsTest, UnmappedCertificateIsUnauthenticatedNamingItsSubject) {
  auto channel = TlsChannel(addresses_[0], certs_, "stranger");
  procwarp::v1::GetStatusResponse status;
  grpc::Status s = StatusOver(channel, &status);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("'CN=stranger'"));
  EXPECT_THAT(s.error_message(), HasSubstr("not mapped"));
  // Every call, not only the first, and nothing runs.
  procwarp::v1::SpawnResponse spawned;
  grpc::Status spawn = procwarp::v1::Processes::NewStub(channel)->Spawn(
      Ctx().get(), PipedSpawn({"/bin/true"}), &spawned);
  EXPECT_EQ(spawn.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The client library says the same.
  absl::StatusOr<Client> client = Client::Connect(Target(), Options("stranger"));
  EXPECT_TRUE(absl::IsUnauthenticated(client.status())) << client.status();
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("CN=stranger"));
  EXPECT_TRUE(StillServing());
}

TEST_F(TlsTest, ClientWithoutCertificateIsToldSo) {
  absl::StatusOr<Client> client = Client::Connect(Target(), Options(""));
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(absl::IsUnauthenticated(client.status())) << client.status();
  EXPECT_THAT(std::string(client.status().message()),
              HasSubstr("no client certificate"));
  EXPECT_TRUE(StillServing());
}

TEST_F(TlsTest, CertificateOfAnotherCaIsRefusedAsUnknownCa) {
  auto other = TlsCertificates::Make(MakeTempDir());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other->AddClient("nobody", {"--uid", "65534"}).ok());
  // Our certificate from another CA: the daemon refuses it.
  absl::StatusOr<Client> client = Client::Connect(
      Target(), {.ca = certs_.ca(), .cert = other->cert("nobody"),
                 .key = other->key("nobody")});
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(std::string(client.status().message()),
              HasSubstr("the daemon refused this client"));
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("unknown CA"));
  // Trusting another CA: we refuse the daemon.
  absl::StatusOr<Client> wrong_ca = Client::Connect(
      Target(), {.ca = other->ca(), .cert = certs_.cert("nobody"),
                 .key = certs_.key("nobody")});
  ASSERT_FALSE(wrong_ca.ok());
  EXPECT_THAT(std::string(wrong_ca.status().message()),
              HasSubstr("this client refused the daemon's certificate"));
  EXPECT_THAT(std::string(wrong_ca.status().message()), HasSubstr("unknown CA"));
  std::filesystem::remove_all(other->dir());
  EXPECT_TRUE(StillServing());
}

TEST_F(TlsTest, ExpiredCertificateIsRefusedByBothSides) {
  // The client library will not even send it...
  absl::StatusOr<Client> client = Client::Connect(Target(), Options("expired"));
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("expired"));
  // ...and the daemon refuses it when a client does.
  internal::TlsMaterial material;
  material.ca_file = certs_.ca();
  material.cert_file = certs_.cert("expired");
  for (auto [path, out] : {std::pair{certs_.ca(), &material.ca_pem},
                           std::pair{certs_.cert("expired"), &material.cert_pem},
                           std::pair{certs_.key("expired"), &material.key_pem}}) {
    std::ifstream in(path);
    out->assign(std::istreambuf_iterator<char>(in), {});
  }
  absl::Status refused =
      internal::DiagnoseTls("127.0.0.1", Port(), material, absl::Seconds(10));
  EXPECT_TRUE(absl::IsUnauthenticated(refused)) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("daemon refused"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("expired"));
  EXPECT_TRUE(StillServing());
}

// Every client refuses a daemon whose own certificate is out of its dates,
// so the daemon says so in its log (docs/remote.md, "Reloading
// certificates"): at start, and again at each reload that brings one.
TEST_F(TlsTest, ServerCertificateOutOfItsDatesIsLoggedAtStartAndOnReload) {
  daemon_.reset();
  ASSERT_TRUE(certs_.RemakeServer({"20200101000000Z", "20210101000000Z"}).ok());
  // Outside systemd the log is the daemon's stderr: into a file to read.
  const std::string log = certs_.dir() + "/procwarpd.log";
  DaemonHarness::Options base = DaemonHarness::Options::WithAgent();
  base.wrapper = {"/bin/sh", "-c", "exec \"$@\" 2>>\"$0\"", log};
  auto d = DaemonHarness::Start(TlsDaemonOptions(certs_, "", base));
  ASSERT_TRUE(d.ok()) << d.status();
  daemon_ = *std::move(d);
  addresses_ = TlsAddresses(*daemon_);
  ASSERT_EQ(addresses_.size(), 2u);
  auto logged = [&log] {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  // Logged before the daemon reports ready.
  EXPECT_THAT(logged(), HasSubstr("TLS credentials loaded: the server "
                                  "certificate 'CN=localhost' is expired on "
                                  "2021-01-01"));
  EXPECT_THAT(logged(), HasSubstr("clients will refuse this daemon"));

  // Renewed too early: a certificate that is not valid yet.
  ASSERT_TRUE(certs_.RemakeServer({"20900101000000Z", "20910101000000Z"}).ok());
  kill(daemon_->pid(), SIGHUP);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(logged(), "TLS credentials reloaded: the server "
                                       "certificate 'CN=localhost' is not "
                                       "valid before 2090-01-01");
  })) << logged();

  // A valid one again: logged as valid, and clients accept the daemon.
  ASSERT_TRUE(certs_.RemakeServer({}).ok());
  kill(daemon_->pid(), SIGHUP);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(logged(), "TLS credentials reloaded: server "
                                       "certificate 'CN=localhost' valid until");
  })) << logged();
  EXPECT_TRUE(Eventually([&] {
    return Client::Connect(Target(), Options("nobody")).ok();
  }));
  // Each connection's first call logs who it is.
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(logged(), "from 127.0.0.1:") &&
           absl::StrContains(logged(), "connected as uid 65534");
  })) << logged();
}

TEST_F(TlsTest, ServerCertificateForAnotherNameIsANameMismatch) {
  // A daemon whose certificate names only "elsewhere.example".
  daemon_.reset();
  std::filesystem::remove_all(certs_.dir());
  auto certs = TlsCertificates::Make(MakeTempDir(), {"elsewhere.example"});
  ASSERT_TRUE(certs.ok());
  certs_ = *std::move(certs);
  ASSERT_TRUE(certs_.AddStandardClients().ok());
  StartDaemon("");
  absl::StatusOr<Client> client = Client::Connect(Target(), Options("nobody"));
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("name mismatch"));
  EXPECT_THAT(std::string(client.status().message()),
              HasSubstr("this client refused the daemon's certificate"));
}

TEST_F(TlsTest, PlainTcpAndOldTlsVersionsGetNoAnswer) {
  // gRPC without TLS: no gRPC answer at all.
  auto plain = grpc::CreateChannel(addresses_[0], grpc::InsecureChannelCredentials());
  procwarp::v1::GetVersionResponse version;
  grpc::Status s = procwarp::v1::Admin::NewStub(plain)->GetVersion(
      Ctx(absl::Seconds(10)).get(), {}, &version);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_TRUE(version.version().empty());
  // A TLS 1.1 client (the openssl tool) gets no session (gRPC's TLS
  // closes the connection, without an alert).
  RunResult old = RunProgram(
      {"/bin/sh", "-c",
       absl::StrCat("openssl s_client -connect ", addresses_[0],
                    " -tls1_1 -cipher DEFAULT@SECLEVEL=0 -cert ",
                    certs_.cert("nobody"), " -key ", certs_.key("nobody"),
                    " </dev/null 2>&1")});
  EXPECT_NE(old.exit_code, 0);
  EXPECT_THAT(old.out, HasSubstr("Cipher is (NONE)"));
  // Still serving TLS 1.2+ and local callers.
  procwarp::v1::GetStatusResponse status;
  EXPECT_TRUE(StatusOver(TlsChannel(addresses_[0], certs_, "nobody"), &status).ok());
  EXPECT_TRUE(StillServing());
}

TEST_F(TlsTest, LocalOnlyRpcsAreFailedPreconditionAndTheClientStreams) {
  absl::StatusOr<Client> client = Client::Connect(Target(1), Options("nobody"));
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE(client->remote());
  absl::StatusOr<Thread> thread = client->CreateThread();
  ASSERT_TRUE(thread.ok()) << thread.status();
  const size_t size = 1 << 20;
  absl::StatusOr<Pointer> buffer = thread->Allocate(size);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 7);
  // Large enough for the direct path locally: remotely the client streams.
  ASSERT_TRUE(buffer->Write(data).ok());
  absl::StatusOr<std::string> back = buffer->Read(0, size);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data);

  // Raw calls on another connection of the same uid: the local-only
  // refusal comes before any handle lookup.
  auto channel = TlsChannel(addresses_[1], certs_, "nobody");
  procwarp::v1::DirectMemoryRequest direct;
  direct.set_pointer_id(buffer->id());
  direct.set_length(size);
  direct.set_client_address(reinterpret_cast<uint64_t>(data.data()));
  procwarp::v1::DirectMemoryResponse copied;
  auto memory = procwarp::v1::Memory::NewStub(channel);
  grpc::Status to_client = memory->ReadToClient(Ctx().get(), direct, &copied);
  EXPECT_EQ(to_client.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(to_client.error_message(), HasSubstr("ReadStream"));
  grpc::Status from_client = memory->WriteFromClient(Ctx().get(), direct, &copied);
  EXPECT_EQ(from_client.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(from_client.error_message(), HasSubstr("WriteStream"));
  procwarp::v1::ExportFdRequest export_fd;
  export_fd.set_thread_id(thread->id());
  export_fd.set_fd(0);
  procwarp::v1::ExportFdResponse exported;
  grpc::Status e = procwarp::v1::Files::NewStub(channel)->ExportFd(
      Ctx().get(), export_fd, &exported);
  EXPECT_EQ(e.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(e.error_message(), HasSubstr("TransferFd"));
  // The client library's own ExportFd says the same.
  auto pipe = thread->Pipe();
  ASSERT_TRUE(pipe.ok()) << pipe.status();
  absl::StatusOr<int> fd = thread->ExportFd(pipe->first);
  EXPECT_TRUE(absl::IsFailedPrecondition(fd.status())) << fd.status();
}

TEST_F(TlsTest, NewCaBundleTakesEffectWithoutRestartAndStreamsContinue) {
  auto other = TlsCertificates::Make(MakeTempDir());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other->AddClient("nobody", {"--uid", "65534"}).ok());
  const TlsOptions old_ca_client = Options("nobody");
  const TlsOptions new_ca_client = {.ca = certs_.ca(),
                                    .cert = other->cert("nobody"),
                                    .key = other->key("nobody")};
  // A live stream over TLS, made with the old CA.
  auto channel = TlsChannel(addresses_[0], certs_, "nobody");
  auto processes = procwarp::v1::Processes::NewStub(channel);
  auto events_ctx = Ctx(absl::Minutes(2));
  auto events = processes->Events(events_ctx.get(), {});
  events->WaitForInitialMetadata();

  auto replace_bundle = [&](const std::string& from) {
    // As an administrator (or a Kubernetes Secret) would: a new file
    // renamed over the old one.
    const std::string next = ClientCaBundle(certs_) + ".new";
    std::filesystem::copy_file(from, next,
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::rename(next, ClientCaBundle(certs_));
  };
  // 1. File change: only the other CA's clients are accepted from now on.
  replace_bundle(other->ca());
  EXPECT_TRUE(Eventually([&] {
    return Client::Connect(Target(), new_ca_client).ok();
  }));
  absl::StatusOr<Client> refused = Client::Connect(Target(), old_ca_client);
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("unknown CA"));

  // The stream made before still works: a spawn on its connection shows up.
  procwarp::v1::SpawnResponse spawned;
  ASSERT_TRUE(processes->Spawn(Ctx().get(), PipedSpawn({"/bin/true"}), &spawned).ok());
  // Reads until an event about `id` (a process also has an exit event).
  auto saw = [&](const std::string& id) {
    procwarp::v1::ProcessEvent event;
    while (events->Read(&event)) {
      if (event.process().id() == id) return true;
    }
    return false;
  };
  EXPECT_TRUE(saw(spawned.process().id()));

  // 2. SIGHUP: the old bundle back, written in place (no inotify rename
  // needed, but SIGHUP makes it certain).
  {
    std::ifstream in(certs_.ca());
    std::string pem((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(ClientCaBundle(certs_), std::ios::trunc) << pem;
  }
  kill(daemon_->pid(), SIGHUP);
  EXPECT_TRUE(Eventually([&] {
    return Client::Connect(Target(), old_ca_client).ok();
  }));
  ASSERT_TRUE(processes->Spawn(Ctx().get(), PipedSpawn({"/bin/true"}), &spawned).ok());
  EXPECT_TRUE(saw(spawned.process().id()));
  events_ctx->TryCancel();
  events->Finish();

  // A broken bundle is not taken: the daemon keeps the last good one.
  std::ofstream(ClientCaBundle(certs_), std::ios::trunc) << "not a certificate";
  kill(daemon_->pid(), SIGHUP);
  EXPECT_TRUE(Client::Connect(Target(), old_ca_client).ok());
  std::filesystem::remove_all(other->dir());
}

TEST_F(TlsTest, CliTakesFlagsEnvironmentAndContextsAndShowsWhoYouAre) {
  const std::string cli = RunfilePath("client/cli/procwarp");
  const std::string home = certs_.dir() + "/home";
  std::filesystem::create_directories(home + "/.config/procwarp");
  std::ofstream(home + "/.config/procwarp/config")
      << "current_context: \"lab\"\n"
      << "contexts { name: \"lab\" host: \"" << addresses_[1] << "\" ca: \""
      << certs_.ca() << "\" cert: \"" << certs_.cert("nobody") << "\" key: \""
      << certs_.key("nobody") << "\" }\n"
      << "contexts { name: \"here\" socket: \"" << daemon_->socket_path()
      << "\" }\n";
  const std::string env_home = "HOME=" + home;
  // Flags.
  RunResult flags = RunProgram({cli, "--host", addresses_[0], "--ca", certs_.ca(),
                                "--cert", certs_.cert("admin"), "--key",
                                certs_.key("admin"), "status"},
                               -1, -1, {env_home});
  EXPECT_EQ(flags.exit_code, 0) << flags.out;
  EXPECT_THAT(flags.out, HasSubstr("host:       tls://" + addresses_[0]));
  EXPECT_THAT(flags.out, HasSubstr("uid 0, gid 0"));
  EXPECT_THAT(flags.out, HasSubstr("remote: certificate CN=admin from 127.0.0.1:"));
  // The environment.
  RunResult env = RunProgram(
      {cli, "status"}, -1, -1,
      {env_home, "PROCWARP_HOST=" + addresses_[0], "PROCWARP_CA=" + certs_.ca(),
       "PROCWARP_CERT=" + certs_.cert("admin"),
       "PROCWARP_KEY=" + certs_.key("admin")});
  EXPECT_THAT(env.out, HasSubstr("remote: certificate CN=admin"));
  // The file's current context, then a named one.
  RunResult context = RunProgram({cli, "status"}, -1, -1, {env_home});
  EXPECT_EQ(context.exit_code, 0) << context.out;
  EXPECT_THAT(context.out, HasSubstr("(context lab)"));
  EXPECT_THAT(context.out, HasSubstr("uid 65534"));
  EXPECT_THAT(context.out, HasSubstr("remote: certificate CN=nobody from [::1]:"));
  RunResult here = RunProgram({cli, "--context", "here", "status"}, -1, -1,
                              {env_home});
  EXPECT_THAT(here.out, HasSubstr("socket:     " + daemon_->socket_path()));
  // A certificate problem is explained, in one line, without gRPC's noise.
  RunResult refused = RunProgram(
      {"/bin/sh", "-c",
       absl::StrCat(cli, " --host ", addresses_[0], " --ca ", certs_.ca(),
                    " ps 2>&1")},
      -1, -1, {"HOME=/nonexistent"});  // no context to take a certificate from
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_EQ(refused.out,
            absl::StrCat("procwarp: TLS to 127.0.0.1: the daemon refused this "
                         "client: no client certificate was sent (give --cert "
                         "and --key)\n"));
}

// Opens a TCP connection to `address` (HOST:PORT, IPv4) that sends nothing.
UniqueFd IdleConnection(const std::string& address) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int port = 0;
  (void)absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port);
  addr.sin_port = htons(port);
  EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

TEST_F(TlsTest, IdleConnectionsAreBoundedAndTimedOut) {
  StartDaemon("max_connections: 2 handshake_timeout_ms: 5000");
  const int fds_before = daemon_->CountFds();
  UniqueFd idle1 = IdleConnection(addresses_[0]);
  UniqueFd idle2 = IdleConnection(addresses_[0]);
  // Both slots are held by clients that send nothing: a real client is
  // turned away at accept, and told the connection was closed.
  absl::StatusOr<Client> turned_away = Client::Connect(Target(), Options("nobody"));
  EXPECT_FALSE(turned_away.ok());
  EXPECT_TRUE(absl::IsUnavailable(turned_away.status())) << turned_away.status();
  // The idle ones hold nothing past the handshake timeout: the daemon
  // closes them (read() returns when it does).
  char byte;
  EXPECT_LE(read(idle1.get(), &byte, 1), 0);
  EXPECT_LE(read(idle2.get(), &byte, 1), 0);
  absl::StatusOr<Client> served = Client::Connect(Target(), Options("nobody"));
  EXPECT_TRUE(served.ok()) << served.status();
  EXPECT_TRUE(StillServing());
  idle1.Reset();
  idle2.Reset();
  served = absl::UnknownError("dropped");
  EXPECT_TRUE(Eventually([&] { return daemon_->CountFds() <= fds_before; }))
      << daemon_->CountFds() << " fds, " << fds_before << " before";
}

// A client with a good certificate that completes the handshake and then
// makes no call (so its identity, and its per-identity limit, are never
// known) holds its connection no longer than the handshake timeout.
TEST_F(TlsTest, ConnectionThatNeverCallsIsClosedAfterTheHandshakeTimeout) {
  StartDaemon("max_connections: 2 handshake_timeout_ms: 3000");
  const int fds_before = daemon_->CountFds();
  // TLS, then nothing at all (gRPC itself waits for HTTP/2's preface only
  // that long)...
  const absl::Time start = absl::Now();
  RunResult silent = RunProgram(
      {"/bin/bash", "-c",
       absl::StrCat("exec timeout 25 openssl s_client -connect ", addresses_[0],
                    " -cert ", certs_.cert("nobody"), " -key ",
                    certs_.key("nobody"), " -CAfile ", certs_.ca(),
                    " -alpn h2 < <(sleep 25) 2>&1")});
  EXPECT_NE(silent.exit_code, 124) << "still open after 25 s: " << silent.out;
  EXPECT_THAT(silent.out, HasSubstr("Verification: OK"));  // it handshook
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  // ...and a gRPC client that connects (TLS and HTTP/2) but never calls.
  auto idle = TlsChannel(addresses_[0], certs_, "nobody");
  ASSERT_TRUE(idle->WaitForConnected(
      absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
  const absl::Time connected = absl::Now();
  EXPECT_TRUE(idle->WaitForStateChange(
      GRPC_CHANNEL_READY, absl::ToChronoTime(absl::Now() + absl::Seconds(20))))
      << "the daemon kept a connection that never called";
  EXPECT_LT(absl::Now() - connected, absl::Seconds(15));
  EXPECT_TRUE(Client::Connect(Target(), Options("nobody")).ok());
  EXPECT_TRUE(Eventually([&] { return daemon_->CountFds() <= fds_before; }))
      << daemon_->CountFds() << " fds, " << fds_before << " before";
}

TEST_F(TlsTest, RemoteAndLocalConnectionsShareThePerIdentityLimit) {
  StartDaemon("", {"--max_connections_per_identity", "2"});
  std::vector<std::shared_ptr<grpc::Channel>> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(TlsChannel(addresses_[0], certs_, "nobody"));
    procwarp::v1::GetStatusResponse status;
    ASSERT_TRUE(StatusOver(held.back(), &status).ok());
  }
  // The third connection of uid 65534 is closed after the handshake.
  procwarp::v1::GetStatusResponse status;
  grpc::Status third = StatusOver(TlsChannel(addresses_[0], certs_, "nobody"), &status);
  EXPECT_EQ(third.error_code(), grpc::StatusCode::UNAVAILABLE);
  // And so is a local one of the same uid.
  RunResult local = RunProgram({RunfilePath("tests/integration/peer_client"),
                                "--socket", daemon_->socket_path(), "--uid",
                                "65534", "--gid", "65534", "status"});
  EXPECT_THAT(local.out, StartsWith("UNAVAILABLE"));
  // Root (admin) is not affected.
  EXPECT_TRUE(StatusOver(TlsChannel(addresses_[0], certs_, "admin"), &status).ok());
  EXPECT_TRUE(StillServing());
}

TEST_F(TlsTest, ClientVanishingMidStreamLeaksNothing) {
  const int fds_before = daemon_->CountFds();
  // A remote client in its own process, blocked in an Events stream...
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<std::string> argv = {
        RunfilePath("tests/integration/peer_client"), "--tls", addresses_[0],
        "--ca", certs_.ca(), "--cert", certs_.cert("nobody"), "--key",
        certs_.key("nobody"), "events", "600000"};
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  procwarp::v1::GetStatusResponse status;
  ASSERT_TRUE(Eventually([&] {
    return StatusOver(daemon_->NewChannel(), &status).ok() && status.clients() >= 2;
  }));
  // ...vanishes (SIGKILL: the kernel closes its socket mid-stream).
  kill(pid, SIGKILL);
  int wstatus;
  waitpid(pid, &wstatus, 0);
  EXPECT_TRUE(Eventually([&] {
    return StatusOver(daemon_->NewChannel(), &status).ok() && status.clients() == 1;
  }));
  EXPECT_TRUE(Eventually([&] { return daemon_->CountFds() <= fds_before; }))
      << daemon_->CountFds() << " fds, " << fds_before << " before";
  EXPECT_TRUE(StillServing());
}

}  // namespace
}  // namespace procwarp::testing
