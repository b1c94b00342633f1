// remote_bench: procwarpd over mutual TLS on a veth pair, against baselines
// measured in the same run (docs/remote.md, issue "remote hosts"):
//   - unary Admin.GetStatus over mTLS vs the same over the unix socket, and
//     vs a bare gRPC Echo over a TLS link on the same veth pair;
//   - a 256 MiB Memory.ReadStream over mTLS vs a plain TCP copy of 256 MiB
//     over the same veth pair (target >= 0.5x its bandwidth).
// The daemon, the TLS echo server and the TCP source run in a network
// namespace the benchmark makes (and removes), reached over a veth pair.
// Run as root: bazel run //bench:remote_bench -- [--iterations N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "bench/bench_util.h"
#include "bench/echo.grpc.pb.h"
#include "bench/echo_server.h"
#include "client/cc/client.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/tls_harness.h"

extern char** environ;

namespace procwarp::bench {
namespace {

using testing::DaemonHarness;
using testing::TlsCertificates;

constexpr size_t kStreamBytes = size_t{256} << 20;
constexpr char kNetns[] = "pwbench";
constexpr char kOurLink[] = "pwbv0";
constexpr char kTheirLink[] = "pwbv1";
constexpr char kOurAddress[] = "10.78.0.1";
constexpr char kTheirAddress[] = "10.78.0.2";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool Sh(const std::string& command) {
  return testing::RunProgram({"/bin/sh", "-c", command + " >/dev/null 2>&1"})
             .exit_code == 0;
}

// ---- helper processes, run inside the namespace (re-executing ourselves)

// --tls_echo=ADDR:PORT,CA,CERT,KEY: bare gRPC with gRPC's own mutual TLS.
int ServeTlsEcho(const std::string& spec) {
  std::vector<std::string> parts;
  std::stringstream in(spec);
  for (std::string p; std::getline(in, p, ',');) parts.push_back(p);
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = ReadAll(parts[1]);
  ssl.pem_key_cert_pairs.push_back({ReadAll(parts[3]), ReadAll(parts[2])});
  EchoService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(parts[0], grpc::SslServerCredentials(ssl));
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server) return 1;
  server->Wait();
  return 0;
}

// --tcp_source=ADDR:PORT: sends kStreamBytes to each client that connects.
int ServeTcpSource(const std::string& address) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  size_t colon = address.rfind(':');
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  addr.sin_port = htons(atoi(address.substr(colon + 1).c_str()));
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 16) != 0) {
    return 1;
  }
  std::vector<char> chunk(1 << 20, 'x');
  for (;;) {
    int conn = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    for (size_t sent = 0; sent < kStreamBytes;) {
      ssize_t n = send(conn, chunk.data(),
                       std::min(chunk.size(), kStreamBytes - sent), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += n;
    }
    close(conn);
  }
}

pid_t SpawnInNetns(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/sbin/ip", "netns", "exec", kNetns};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c;
  for (auto& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  pid_t pid = -1;
  posix_spawn(&pid, c[0], nullptr, nullptr, c.data(), environ);
  return pid;
}

void Stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

// Reads everything the TCP source sends; returns the bytes read.
size_t TcpCopy(const std::string& address, std::vector<char>& buffer) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  size_t colon = address.rfind(':');
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  addr.sin_port = htons(atoi(address.substr(colon + 1).c_str()));
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
    absl::SleepFor(absl::Milliseconds(50));  // the source is still starting
  }
  size_t total = 0;
  for (;;) {
    ssize_t n = recv(fd, buffer.data() + (total % buffer.size()),
                     std::min<size_t>(1 << 20, buffer.size() - total % buffer.size()), 0);
    if (n <= 0) break;
    total += n;
  }
  close(fd);
  return total;
}

int RunInNamespace(const BenchOptions& options);

// Makes the namespace and veth pair, runs, and removes them whatever happens.
int Run(const BenchOptions& options) {
  if (geteuid() != 0) {
    std::cerr << "remote_bench needs root (network namespaces)\n";
    return 1;
  }
  Sh(absl::StrCat("ip netns del ", kNetns));
  if (!Sh(absl::StrCat("ip netns add ", kNetns)) ||
      !Sh(absl::StrCat("ip link add ", kOurLink, " type veth peer name ",
                       kTheirLink, " netns ", kNetns)) ||
      !Sh(absl::StrCat("ip addr add ", kOurAddress, "/24 dev ", kOurLink)) ||
      !Sh(absl::StrCat("ip link set ", kOurLink, " up")) ||
      !Sh(absl::StrCat("ip -n ", kNetns, " addr add ", kTheirAddress, "/24 dev ",
                       kTheirLink)) ||
      !Sh(absl::StrCat("ip -n ", kNetns, " link set ", kTheirLink, " up")) ||
      !Sh(absl::StrCat("ip -n ", kNetns, " link set lo up"))) {
    std::cerr << "cannot set up the network namespace and veth pair\n";
    Sh(absl::StrCat("ip netns del ", kNetns));
    return 1;
  }
  int rc = RunInNamespace(options);
  Sh(absl::StrCat("ip netns del ", kNetns));
  return rc;
}

int RunInNamespace(const BenchOptions& options) {
  int rc = 0;
  {
    auto certs = TlsCertificates::Make(testing::MakeTempDir(),
                                       {"localhost", kTheirAddress});
    if (!certs.ok() || !certs->AddClient("admin", {"--admin"}).ok()) {
      std::cerr << "cannot make certificates\n";
      return 1;
    }
    DaemonHarness::Options base;
    base.wrapper = {"/usr/sbin/ip", "netns", "exec", kNetns};
    base.flags = {"--agent_path", testing::RunfilePath("agent/procwarp-agent"),
                  "--listen_tcp", absl::StrCat(kTheirAddress, ":0")};
    auto daemon = DaemonHarness::Start(testing::TlsDaemonOptions(*certs, "", base));
    if (!daemon.ok()) {
      std::cerr << daemon.status() << "\n";
      return 1;
    }
    std::string tls_address;
    for (const auto& a : testing::TlsAddresses(**daemon)) {
      if (a.rfind(kTheirAddress, 0) == 0) tls_address = a;
    }
    const std::string echo_address = absl::StrCat(kTheirAddress, ":17443");
    const std::string source_address = absl::StrCat(kTheirAddress, ":17444");
    pid_t echo = SpawnInNetns(
        {SelfPath(), absl::StrCat("--tls_echo=", echo_address, ",", certs->ca(),
                                  ",", certs->server_cert(), ",",
                                  certs->server_key())});
    pid_t source =
        SpawnInNetns({SelfPath(), absl::StrCat("--tcp_source=", source_address)});

    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadAll(certs->ca());
    ssl.pem_cert_chain = ReadAll(certs->cert("admin"));
    ssl.pem_private_key = ReadAll(certs->key("admin"));
    auto echo_channel = grpc::CreateChannel(echo_address, grpc::SslCredentials(ssl));
    echo_channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    auto echo_stub = Echo::NewStub(echo_channel);
    auto tls_admin = procwarp::v1::Admin::NewStub(
        testing::TlsChannel(tls_address, *certs, "admin"));
    auto unix_admin = (*daemon)->Admin();
    auto status_call = [](procwarp::v1::Admin::Stub* stub) {
      grpc::ClientContext ctx;
      procwarp::v1::GetStatusResponse r;
      if (!stub->GetStatus(&ctx, {}, &r).ok()) abort();
    };
    auto echo_call = [&] {
      grpc::ClientContext ctx;
      EchoResponse r;
      if (!echo_stub->Echo(&ctx, EchoRequest(), &r).ok()) abort();
    };
    const pid_t daemon_pid = (*daemon)->pid();

    for (int cpu : options.Cpus()) {
      PinToCpu(cpu);
      const std::string where = cpu >= 0 ? " [pinned]" : " [unpinned]";
      if (options.Wants("status")) {
        Paired vs_unix = MeasurePaired(
            options.iterations, [&] { status_call(unix_admin.get()); },
            [&] { status_call(tls_admin.get()); },
            [&] { return ProcessCpuMicros(daemon_pid); },
            [&] { return ProcessCpuMicros(daemon_pid); });
        Report("Admin.GetStatus over mTLS/veth" + where, vs_unix.measured,
               "Admin.GetStatus over the unix socket", vs_unix.baseline, "none");
        std::printf("  daemon CPU per call: mTLS %.1f us, unix %.1f us\n",
                    vs_unix.measured_counter_per_op,
                    vs_unix.baseline_counter_per_op);
        Paired vs_echo = MeasurePaired(
            options.iterations, echo_call, [&] { status_call(tls_admin.get()); });
        Report("Admin.GetStatus over mTLS/veth" + where, vs_echo.measured,
               "bare gRPC Echo over gRPC's TLS on the same veth", vs_echo.baseline,
               "<= 1.3x");
      }
      if (options.Wants("stream")) {
        auto client = Client::Connect(
            "tls://" + tls_address,
            TlsOptions{.ca = certs->ca(), .cert = certs->cert("admin"),
                       .key = certs->key("admin")});
        if (!client.ok()) {
          std::cerr << client.status() << "\n";
          rc = 1;
          break;
        }
        auto thread = client->CreateThread();
        auto pointer = thread.ok() ? thread->Allocate(kStreamBytes)
                                   : absl::StatusOr<Pointer>(thread.status());
        if (!pointer.ok()) {
          std::cerr << pointer.status() << "\n";
          rc = 1;
          break;
        }
        // Both sides read into memory they keep, as a copying program
        // would: the TCP copy into a 64 MiB ring, the stream into a 256 MiB
        // buffer. Each is touched by a warm-up round first (a new buffer's
        // page faults cost more than the transfer here; docs/remote.md).
        std::vector<char> sink(64 << 20);
        std::vector<char> into(kStreamBytes);
        auto tcp_copy = [&] {
          if (TcpCopy(source_address, sink) != kStreamBytes) abort();
        };
        double daemon_cpu = 0;  // over the measured streams
        auto stream_into = [&] {
          const double before = ProcessCpuMicros(daemon_pid);
          if (!pointer->ReadInto(absl::MakeSpan(into)).ok()) abort();
          daemon_cpu += ProcessCpuMicros(daemon_pid) - before;
        };
        // The floor for any design where gRPC does the TLS: a bare gRPC
        // server stream of the same bytes in the same 1 MiB messages over
        // gRPC's own TLS, read into the same buffer, with the client's
        // channel settings (client/cc/client.cc).
        grpc::ChannelArguments stream_args;
        stream_args.SetMaxReceiveMessageSize(-1);
        stream_args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
        stream_args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 1 << 20);
        auto bare_stub = Echo::NewStub(grpc::CreateCustomChannel(
            echo_address, grpc::SslCredentials(ssl), stream_args));
        auto bare_stream = [&] {
          grpc::ClientContext ctx;
          StreamRequest q;
          q.set_total_bytes(kStreamBytes);
          q.set_chunk_bytes(1 << 20);
          auto reader = bare_stub->Stream(&ctx, q);
          StreamChunk chunk;
          size_t got = 0;
          while (reader->Read(&chunk)) {
            if (got + chunk.data().size() > into.size()) abort();
            memcpy(into.data() + got, chunk.data().data(), chunk.data().size());
            got += chunk.data().size();
          }
          if (!reader->Finish().ok() || got != kStreamBytes) abort();
        };
        tcp_copy();
        stream_into();
        bare_stream();
        daemon_cpu = 0;
        const int rounds = 7;
        // CPU time of both ends (this process and the server), far steadier
        // than wall time on a shared machine.
        const pid_t self = getpid();
        Paired paired = MeasurePaired(
            rounds, tcp_copy, stream_into,
            [&] { return ProcessCpuMicros(daemon_pid) + ProcessCpuMicros(self); },
            [&] { return ProcessCpuMicros(source) + ProcessCpuMicros(self); });
        Paired bare = MeasurePaired(
            rounds, tcp_copy, bare_stream,
            [&] { return ProcessCpuMicros(echo) + ProcessCpuMicros(self); },
            [&] { return ProcessCpuMicros(source) + ProcessCpuMicros(self); });
        // For the record: Pointer::Read, which returns a new string each
        // time and so pays its page faults.
        Samples fresh = Measure(1, 0, [&] {
          auto data = pointer->Read(0, kStreamBytes);
          if (!data.ok() || data->size() != kStreamBytes) abort();
        });
        // Where the time goes: the same stream over the unix socket (no
        // TLS, no pump, no veth), for the record.
        auto unix_memory = procwarp::v1::Memory::NewStub((*daemon)->NewChannel());
        auto unix_stream = [&] {
          grpc::ClientContext ctx;
          procwarp::v1::ReadMemoryRequest q;
          q.set_pointer_id(pointer->id());
          q.set_length(kStreamBytes);
          auto reader = unix_memory->ReadStream(&ctx, q);
          procwarp::v1::ReadMemoryChunk chunk;
          size_t got = 0;
          while (reader->Read(&chunk)) got += chunk.data().size();
          if (!reader->Finish().ok() || got != kStreamBytes) abort();
        };
        Samples local = Measure(3, 1, unix_stream);
        const double mib = kStreamBytes / double(1 << 20);
        std::printf("  (the same ReadStream over the unix socket: %.0f MiB/s)\n",
                    mib / (local.Median() / 1e6));
        std::printf("  (Pointer::Read into a new 256 MiB string: %.0f MiB/s)\n",
                    mib / (fresh.Median() / 1e6));
        std::printf(
            "  CPU per 256 MiB, both ends: stream %.0f ms (daemon %.0f ms), "
            "TCP copy %.0f ms -> %.2fx\n",
            paired.measured_counter_per_op / 1e3, daemon_cpu / rounds / 1e3,
            paired.baseline_counter_per_op / 1e3,
            paired.baseline_counter_per_op / paired.measured_counter_per_op);
        const double bare_mibs = mib / (bare.measured.Median() / 1e6);
        const double bare_tcp_mibs = mib / (bare.baseline.Median() / 1e6);
        std::printf(
            "256 MiB bare gRPC stream over gRPC's TLS/veth%s: %.0f MiB/s vs "
            "plain TCP copy: %.0f MiB/s -> %.2fx; CPU per 256 MiB, both ends: "
            "%.0f ms vs TCP copy %.0f ms\n",
            where.c_str(), bare_mibs, bare_tcp_mibs, bare_mibs / bare_tcp_mibs,
            bare.measured_counter_per_op / 1e3,
            bare.baseline_counter_per_op / 1e3);
        const double tls_mibs = mib / (paired.measured.Median() / 1e6);
        const double tcp_mibs = mib / (paired.baseline.Median() / 1e6);
        std::printf(
            "256 MiB Memory.ReadStream over mTLS/veth%s: %.0f MiB/s vs plain "
            "TCP copy over the same veth: %.0f MiB/s -> %.2fx (target >= 0.5x)\n",
            where.c_str(), tls_mibs, tcp_mibs, tls_mibs / tcp_mibs);
      }
    }
    PinToCpu(-1);
    Stop(echo);
    Stop(source);
    daemon->reset();
    std::filesystem::remove_all(certs->dir());
  }
  return rc;
}

int Main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--tls_echo=", 11) == 0) return ServeTlsEcho(argv[i] + 11);
    if (strncmp(argv[i], "--tcp_source=", 13) == 0) return ServeTcpSource(argv[i] + 13);
  }
  BenchOptions options = ParseBenchOptions(
      argc, argv, "procwarpd over mutual TLS on a veth pair vs its baselines",
      {"status", "stream"});
  return Run(options);
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
