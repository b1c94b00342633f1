// Authorisation: an unprivileged client (uid 65534, via peer_client) cannot
// see, signal, wait on, attach to or remove root's processes, runs its own
// children as itself, and never gets another connection's identity even when
// fd numbers are reused under connection churn.
#include <signal.h>

#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/tls_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int kNobody = 65534;

// Every case runs twice: as local callers on the unix socket, and as remote
// callers over mutual TLS whose certificates map to the same identities
// (docs/remote.md: a remote caller is authorised exactly as the local uid
// it maps to). The answers must be the same.
enum class Transport { kUnix, kTls };

class AuthTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    auto certs = TlsCertificates::Make(MakeTempDir());
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
    ASSERT_TRUE(certs_.AddStandardClients().ok());
    auto d = DaemonHarness::Start(TlsDaemonOptions(certs_));
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    stub_ = daemon_->Processes();
    addresses_ = TlsAddresses(*daemon_);
    ASSERT_EQ(addresses_.size(), 2u);
  }

  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(certs_.dir(), ec);
  }

  // Runs peer_client as `uid` (-1: root) and returns its one-line answer.
  // Over TLS, "as uid" means with the certificate mapped to it: nobody's,
  // or the admin role's for root.
  std::string Peer(int uid, std::vector<std::string> op) {
    std::vector<std::string> argv = {RunfilePath("tests/integration/peer_client")};
    if (GetParam() == Transport::kTls) {
      const std::string client = uid >= 0 ? "nobody" : "admin";
      argv.insert(argv.end(), {"--tls", addresses_[0], "--ca", certs_.ca(),
                               "--cert", certs_.cert(client), "--key",
                               certs_.key(client), "--expect_uid",
                               absl::StrCat(uid >= 0 ? uid : 0)});
    } else {
      argv.insert(argv.end(), {"--socket", daemon_->socket_path()});
      if (uid >= 0) {
        argv.insert(argv.end(), {"--uid", absl::StrCat(uid), "--gid", absl::StrCat(uid)});
      }
    }
    argv.insert(argv.end(), op.begin(), op.end());
    RunResult r = RunProgram(argv);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return r.out;
  }

  procwarp::v1::ProcessInfo SpawnAsRoot() {
    procwarp::v1::SpawnResponse spawned;
    EXPECT_TRUE(stub_->Spawn(Ctx().get(),
                             PipedSpawn({"/bin/sleep", "1000"}), &spawned).ok());
    return spawned.process();
  }

  TlsCertificates certs_;
  std::unique_ptr<DaemonHarness> daemon_;
  std::unique_ptr<procwarp::v1::Processes::Stub> stub_;
  std::vector<std::string> addresses_;
};

INSTANTIATE_TEST_SUITE_P(Transports, AuthTest,
                         ::testing::Values(Transport::kUnix, Transport::kTls),
                         [](const auto& info) {
                           return info.param == Transport::kUnix ? "Unix"
                                                                 : "MutualTls";
                         });

TEST_P(AuthTest, NobodyIsAuthenticatedAsNobody) {
  EXPECT_EQ(Peer(kNobody, {"status"}), "OK uid=65534\n");
  EXPECT_EQ(Peer(-1, {"status"}), "OK uid=0\n");
}

TEST_P(AuthTest, NobodyCannotReachRootsProcess) {
  procwarp::v1::ProcessInfo root_process = SpawnAsRoot();
  const std::string& id = root_process.id();
  // Every operation answers NOT_FOUND: the id's existence is not revealed.
  for (const auto& op : std::vector<std::vector<std::string>>{
           {"get", id}, {"signal", id, "9"}, {"wait", id}, {"attach", id},
           {"remove", id}, {"resize", id}}) {
    std::string answer = Peer(kNobody, op);
    EXPECT_THAT(answer, StartsWith("NOT_FOUND")) << op[0];
  }
  EXPECT_THAT(Peer(kNobody, {"list"}), StartsWith("OK n=0"));
  // Root's process is untouched.
  procwarp::v1::GetProcessRequest get;
  get.set_id(id);
  procwarp::v1::GetProcessResponse got;
  ASSERT_TRUE(stub_->Get(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.process().state(), procwarp::v1::PROCESS_STATE_RUNNING);
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(id);
  remove.set_force(true);
  procwarp::v1::RemoveProcessResponse removed;
  EXPECT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
}

TEST_P(AuthTest, NobodySeesNoEventsAboutRootsProcesses) {
  std::string answer;
  std::thread spy([&] { answer = Peer(kNobody, {"events", "1500"}); });
  // Root's activity during the spy's subscription.
  for (int i = 0; i < 5; ++i) {
    procwarp::v1::ProcessInfo p = SpawnAsRoot();
    procwarp::v1::RemoveProcessRequest remove;
    remove.set_id(p.id());
    remove.set_force(true);
    procwarp::v1::RemoveProcessResponse removed;
    ASSERT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
  }
  spy.join();
  EXPECT_THAT(answer, StartsWith("OK events=0"));
}

TEST_P(AuthTest, NobodysChildrenRunAsNobody) {
  std::string answer = Peer(kNobody, {"run", "/usr/bin/id", "-u"});
  EXPECT_THAT(answer, StartsWith("OK"));
  EXPECT_THAT(answer, HasSubstr("uid=65534 exit=0 output=65534"));
  std::string groups = Peer(kNobody, {"run", "/usr/bin/id", "-G"});
  EXPECT_THAT(groups, HasSubstr("output=65534\n"));
}

TEST_P(AuthTest, NobodyGetsRootOnlyInsideItsOwnUserNamespace) {
  std::string answer =
      Peer(kNobody, {"run", "--userns", "/bin/sh", "-c",
                     "echo $(id -u) $(cat /proc/self/uid_map | tr -s ' ')"});
  EXPECT_THAT(answer, HasSubstr("exit=0 output=0 0 65534 1"));
}

TEST_P(AuthTest, NobodyCannotChooseAUidOrListEveryone) {
  std::string answer = Peer(kNobody, {"run", "--as-uid", "0", "/usr/bin/id", "-u"});
  EXPECT_THAT(answer, StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(answer, HasSubstr("admin"));
  EXPECT_THAT(Peer(kNobody, {"list_all"}), StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(Peer(-1, {"list_all"}), StartsWith("OK"));
}

TEST_P(AuthTest, AdminSeesOtherUsersProcesses) {
  EXPECT_THAT(Peer(kNobody, {"run", "/bin/true"}), StartsWith("OK"));
  // peer_client removed its process; spawn one that stays via a second run
  // is not possible (run waits), so check through events instead: root's
  // subscription sees nobody's lifecycle.
  auto ctx = Ctx();
  auto events = stub_->Events(ctx.get(), {});
  events->WaitForInitialMetadata();
  EXPECT_THAT(Peer(kNobody, {"run", "/bin/true"}), StartsWith("OK"));
  procwarp::v1::ProcessEvent event;
  ASSERT_TRUE(events->Read(&event));
  EXPECT_EQ(event.process().owner().uid(), 65534u);
  EXPECT_EQ(event.process().uid(), 65534u);
  ctx->TryCancel();
  events->Finish();
}

TEST_P(AuthTest, IdentityNeverCrossesUnderConnectionChurn) {
  // Two users open and close connections as fast as they can; fd numbers in
  // the daemon are reused constantly. Every call must see its own caller.
  std::string root_answer, nobody_answer;
  std::thread root([&] { root_answer = Peer(-1, {"churn", "300"}); });
  std::thread nobody([&] { nobody_answer = Peer(kNobody, {"churn", "300"}); });
  root.join();
  nobody.join();
  EXPECT_EQ(root_answer, "OK mismatches=0 failures=0\n");
  EXPECT_EQ(nobody_answer, "OK mismatches=0 failures=0\n");
}

}  // namespace
}  // namespace procwarp::testing
