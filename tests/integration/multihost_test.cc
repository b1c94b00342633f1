// Several "hosts" on this machine: network namespaces joined to the test's
// own namespace by veth pairs that the test makes (and removes), a daemon in
// each with its own CA and certificates, driven over mutual TLS from here.
// Remote spawn/wait/attach output, thread create and syscall, and memory
// read by streaming give the same results on every host, as a mapped uid and
// as admin, as they do locally; and a link that goes down mid-call costs the
// daemon nothing once the peer is found dead (docs/remote.md).
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cc/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/tls_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;

bool Ip(const std::string& args) {
  return RunProgram({"/bin/sh", "-c", "ip " + args + " 2>&1"}).exit_code == 0;
}

// What the daemon's fds are (for a failure message).
std::string FdTargets(pid_t pid) {
  std::string out;
  for (const auto& e : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/fd"))) {
    std::error_code ec;
    absl::StrAppend(&out, e.path().filename().string(), "->",
                    std::filesystem::read_symlink(e.path(), ec).string(), " ");
  }
  return out;
}

// One host: a network namespace with a veth link to ours, and a daemon in
// it serving TLS on its end of the link.
struct Host {
  std::string netns;
  std::string our_link;  // our end of the veth pair
  std::string address;   // the host's end
  TlsCertificates certs;
  std::unique_ptr<DaemonHarness> daemon;
  std::string tls_address;  // address:port
};

class MultiHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string tag = absl::StrCat(getpid() % 100000);
    for (int i = 0; i < 2; ++i) {
      auto host = std::make_unique<Host>();
      host->netns = absl::StrCat("pwh", i, "-", tag);
      host->our_link = absl::StrCat("pwv", i, "-", tag);
      const std::string their_link = absl::StrCat("pwp", i, "-", tag);
      const std::string net = absl::StrCat("10.77.", 10 + i, ".");
      host->address = net + "2";
      ASSERT_TRUE(Ip("netns add " + host->netns));
      hosts_.push_back(std::move(host));
      Host& h = *hosts_.back();
      ASSERT_TRUE(Ip(absl::StrCat("link add ", h.our_link, " type veth peer name ",
                                  their_link, " netns ", h.netns)));
      ASSERT_TRUE(Ip(absl::StrCat("addr add ", net, "1/24 dev ", h.our_link)));
      ASSERT_TRUE(Ip("link set " + h.our_link + " up"));
      ASSERT_TRUE(Ip(absl::StrCat("-n ", h.netns, " addr add ", h.address,
                                  "/24 dev ", their_link)));
      ASSERT_TRUE(Ip(absl::StrCat("-n ", h.netns, " link set ", their_link, " up")));
      ASSERT_TRUE(Ip(absl::StrCat("-n ", h.netns, " link set lo up")));

      auto certs = TlsCertificates::Make(
          MakeTempDir(), {"localhost", "127.0.0.1", "::1", h.address});
      ASSERT_TRUE(certs.ok()) << certs.status();
      h.certs = *std::move(certs);
      ASSERT_TRUE(h.certs.AddStandardClients().ok());
      DaemonHarness::Options base = DaemonHarness::Options::WithAgent();
      base.wrapper = {"/usr/sbin/ip", "netns", "exec", h.netns};
      base.flags = {"--agent_path", RunfilePath("agent/procwarp-agent"),
                    "--listen_tcp", h.address + ":0"};
      auto daemon = DaemonHarness::Start(
          TlsDaemonOptions(h.certs, "dead_peer_timeout_ms: 3000", base));
      ASSERT_TRUE(daemon.ok()) << daemon.status();
      h.daemon = *std::move(daemon);
      for (const std::string& a : TlsAddresses(*h.daemon)) {
        if (a.rfind(h.address + ":", 0) == 0) h.tls_address = a;
      }
      ASSERT_FALSE(h.tls_address.empty());
    }
  }

  void TearDown() override {
    for (auto& h : hosts_) {
      h->daemon.reset();
      // Deleting the namespace deletes the veth pair with it.
      Ip("netns del " + h->netns);
      std::error_code ec;
      if (!h->certs.dir().empty()) std::filesystem::remove_all(h->certs.dir(), ec);
    }
  }

  absl::StatusOr<Client> Connect(const Host& h, const std::string& client) {
    return Client::Connect("tls://" + h.tls_address,
                           TlsOptions{.ca = h.certs.ca(),
                                      .cert = h.certs.cert(client),
                                      .key = h.certs.key(client)});
  }

  std::vector<std::unique_ptr<Host>> hosts_;
};

// What a caller sees doing the same work: its uid as the daemon reports it,
// a child's `id -u` output and exit, an agent's getuid(), and 2 MiB written
// and read back (streamed when remote).
struct Outcome {
  uint32_t caller_uid = 0;
  std::string child_output;
  int exit_code = -1;
  int64_t thread_uid = -1;
  bool memory_round_trips = false;
};

Outcome DoTheWork(const Client& client) {
  Outcome o;
  auto status = client.Status();
  EXPECT_TRUE(status.ok()) << status.status();
  if (status.ok()) o.caller_uid = status->caller().uid();

  absl::StatusOr<Process> process = client.Spawn(
      SpawnOptions{.argv = {"/usr/bin/id", "-u"}, .stdout_mode = Stdio::kPipe});
  EXPECT_TRUE(process.ok()) << process.status();
  if (process.ok()) {
    auto session = process->Attach();
    EXPECT_TRUE(session.ok()) << session.status();
    while (session.ok()) {
      auto next = session->Read();
      if (!next.ok() || next->has_exit()) break;
      o.child_output += next->output().data();
    }
    auto exit = process->Wait();
    if (exit.ok()) o.exit_code = exit->code();
  }

  absl::StatusOr<Thread> thread = client.CreateThread();
  EXPECT_TRUE(thread.ok()) << thread.status();
  if (thread.ok()) {
    auto uid = thread->Syscall(SYS_getuid);
    if (uid.ok()) o.thread_uid = uid->value;
    const size_t size = 2 << 20;
    auto buffer = thread->Allocate(size);
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    if (buffer.ok()) {
      std::string data(size, '\0');
      for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 31 + 7);
      EXPECT_TRUE(buffer->Write(data).ok());
      auto back = buffer->Read(0, size);
      o.memory_round_trips = back.ok() && *back == data;
    }
  }
  return o;
}

TEST_F(MultiHostTest, EveryHostGivesTheLocalResultsAsMappedUidAndAdmin) {
  // Locally, as root, on the first host's unix socket: the reference.
  auto local = Client::Connect(hosts_[0]->daemon->socket_path());
  ASSERT_TRUE(local.ok()) << local.status();
  Outcome reference = DoTheWork(*local);
  EXPECT_EQ(reference.caller_uid, 0u);
  EXPECT_EQ(reference.child_output, "0\n");
  EXPECT_TRUE(reference.memory_round_trips);

  for (const auto& h : hosts_) {
    auto admin = Connect(*h, "admin");
    ASSERT_TRUE(admin.ok()) << h->tls_address << ": " << admin.status();
    Outcome as_admin = DoTheWork(*admin);
    EXPECT_EQ(as_admin.caller_uid, reference.caller_uid);
    EXPECT_EQ(as_admin.child_output, reference.child_output);
    EXPECT_EQ(as_admin.exit_code, reference.exit_code);
    EXPECT_EQ(as_admin.thread_uid, reference.thread_uid);
    EXPECT_TRUE(as_admin.memory_round_trips);

    auto nobody = Connect(*h, "nobody");
    ASSERT_TRUE(nobody.ok()) << nobody.status();
    Outcome as_nobody = DoTheWork(*nobody);
    EXPECT_EQ(as_nobody.caller_uid, 65534u);
    EXPECT_EQ(as_nobody.child_output, "65534\n");
    EXPECT_EQ(as_nobody.exit_code, 0);
    EXPECT_EQ(as_nobody.thread_uid, 65534);
    EXPECT_TRUE(as_nobody.memory_round_trips);
  }
}

TEST_F(MultiHostTest, EachHostTrustsOnlyItsOwnCa) {
  // Host 0's client certificate is unknown to host 1's daemon.
  auto crossed = Client::Connect(
      "tls://" + hosts_[1]->tls_address,
      TlsOptions{.ca = hosts_[1]->certs.ca(),
                 .cert = hosts_[0]->certs.cert("admin"),
                 .key = hosts_[0]->certs.key("admin")});
  ASSERT_FALSE(crossed.ok());
  EXPECT_THAT(std::string(crossed.status().message()), HasSubstr("unknown CA"));
  // Nobody on a host cannot reach root's process there, as locally.
  auto admin = Connect(*hosts_[1], "admin");
  ASSERT_TRUE(admin.ok());
  auto sleeper = admin->Spawn(SpawnOptions{.argv = {"/bin/sleep", "1000"}});
  ASSERT_TRUE(sleeper.ok());
  auto nobody = Connect(*hosts_[1], "nobody");
  ASSERT_TRUE(nobody.ok());
  EXPECT_TRUE(absl::IsNotFound(nobody->GetProcess(sleeper->id()).status()));
  EXPECT_TRUE(absl::IsNotFound(nobody->Open(sleeper->id()).status()));
}

TEST_F(MultiHostTest, LinkGoingDownMidCallLeaksNothing) {
  Host& h = *hosts_[0];
  auto clients = [&] {
    procwarp::v1::GetStatusResponse status;
    grpc::Status s = h.daemon->Admin()->GetStatus(Ctx().get(), {}, &status);
    return s.ok() ? status.clients() : -1;
  };
  // Warm up what the daemon opens once, on first use (the agent launcher,
  // the fs.suid_dumpable fd of spawns as another uid), so the fd count
  // before is the steady one.
  {
    auto warm = Connect(h, "nobody");
    ASSERT_TRUE(warm.ok()) << warm.status();
    ASSERT_TRUE(warm->CreateThread().ok());
  }
  ASSERT_TRUE(Eventually([&] { return clients() == 1; }));
  const int fds_before = h.daemon->CountFds();
  const std::string fds_before_list = FdTargets(h.daemon->pid());
  {
    auto nobody = Connect(h, "nobody");
    ASSERT_TRUE(nobody.ok()) << nobody.status();
    auto thread = nobody->CreateThread();
    ASSERT_TRUE(thread.ok());
    // A call in progress: an event stream that waits.
    EventStream events = nobody->Events();
    ASSERT_TRUE(Eventually([&] { return clients() >= 2; }));
    // The link goes down: no FIN, no RST reaches the daemon.
    ASSERT_TRUE(Ip("link set " + h.our_link + " down"));
    events.Cancel();
  }
  // The daemon finds the peer dead (dead_peer_timeout_ms) and frees its
  // connection, thread and handles, while serving everyone else.
  EXPECT_TRUE(Eventually([&] { return clients() == 1; }, absl::Seconds(120)));
  // (clients() itself holds one connection while it asks.)
  EXPECT_TRUE(Eventually([&] { return h.daemon->CountFds() <= fds_before; }))
      << h.daemon->CountFds() << " fds, " << fds_before << " before\nbefore: "
      << fds_before_list << "\nafter: " << FdTargets(h.daemon->pid());
  ASSERT_TRUE(Ip("link set " + h.our_link + " up"));
  auto again = Connect(h, "nobody");
  EXPECT_TRUE(again.ok()) << again.status();
}

}  // namespace
}  // namespace procwarp::testing
