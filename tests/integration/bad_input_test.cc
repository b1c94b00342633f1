// Bad input gets the right status code and a message a person can act on,
// and the daemon keeps serving (each case is followed by a good call).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/tls_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using procwarp::v1::SpawnRequest;

// Every case runs over the unix socket (as root) and over mutual TLS (as
// the admin role): bad input gets the same answer either way.
enum class Transport { kUnix, kTls };

class BadInputTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    DaemonHarness::Options options;
    if (GetParam() == Transport::kTls) {
      auto certs = TlsCertificates::Make(MakeTempDir());
      ASSERT_TRUE(certs.ok()) << certs.status();
      certs_ = *std::move(certs);
      ASSERT_TRUE(certs_.AddClient("admin", {"--admin"}).ok());
      options = TlsDaemonOptions(certs_);
    }
    auto d = DaemonHarness::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    if (GetParam() == Transport::kTls) {
      std::vector<std::string> addresses = TlsAddresses(*daemon_);
      ASSERT_FALSE(addresses.empty());
      stub_ = procwarp::v1::Processes::NewStub(
          TlsChannel(addresses[0], certs_, "admin"));
    } else {
      stub_ = daemon_->Processes();
    }
  }

  void TearDown() override {
    // Still serving: a good spawn works.
    procwarp::v1::SpawnResponse response;
    ASSERT_TRUE(stub_->Spawn(Ctx().get(), PipedSpawn({"/bin/true"}), &response).ok());
    procwarp::v1::WaitRequest wait;
    wait.set_id(response.process().id());
    procwarp::v1::WaitResponse waited;
    EXPECT_TRUE(stub_->Wait(Ctx().get(), wait, &waited).ok());
    daemon_.reset();
    if (!certs_.dir().empty()) {
      std::error_code ec;
      std::filesystem::remove_all(certs_.dir(), ec);
    }
  }

  grpc::Status Spawn(const SpawnRequest& request) {
    procwarp::v1::SpawnResponse response;
    return stub_->Spawn(Ctx().get(), request, &response);
  }

  TlsCertificates certs_;
  std::unique_ptr<DaemonHarness> daemon_;
  std::unique_ptr<procwarp::v1::Processes::Stub> stub_;
};

INSTANTIATE_TEST_SUITE_P(Transports, BadInputTest,
                         ::testing::Values(Transport::kUnix, Transport::kTls),
                         [](const auto& info) {
                           return info.param == Transport::kUnix ? "Unix"
                                                                 : "MutualTls";
                         });

TEST_P(BadInputTest, EmptyArgv) {
  grpc::Status s = Spawn(SpawnRequest());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("argv is empty"));
}

TEST_P(BadInputTest, NonexistentBinary) {
  grpc::Status s = Spawn(PipedSpawn({"/nonexistent/binary"}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("/nonexistent/binary"));
  grpc::Status in_path = Spawn(PipedSpawn({"no-such-program-anywhere"}));
  EXPECT_EQ(in_path.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(in_path.error_message(), HasSubstr("not found in PATH"));
}

TEST_P(BadInputTest, NonExecutableFile) {
  std::string path = daemon_->dir() + "/not-executable";
  std::ofstream(path) << "#!/bin/sh\necho hi\n";
  chmod(path.c_str(), 0644);
  grpc::Status s = Spawn(PipedSpawn({path}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr(path));
}

TEST_P(BadInputTest, NotAnExecutableFormat) {
  std::string path = daemon_->dir() + "/garbage";
  std::ofstream(path) << "\x01\x02\x03 this is not a program\n";
  chmod(path.c_str(), 0755);
  grpc::Status s = Spawn(PipedSpawn({path}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("Exec format error"));
}

TEST_P(BadInputTest, InvalidEnvEntry) {
  SpawnRequest request = PipedSpawn({"/bin/true"});
  request.add_env("NO_EQUALS_SIGN");
  grpc::Status s = Spawn(request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("NAME=value"));
  SpawnRequest empty_name = PipedSpawn({"/bin/true"});
  empty_name.add_env("=value");
  EXPECT_EQ(Spawn(empty_name).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  SpawnRequest nul = PipedSpawn({"/bin/true"});
  nul.add_env(std::string("A=b\0c", 5));
  EXPECT_EQ(Spawn(nul).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(BadInputTest, HugeArgv) {
  SpawnRequest request = PipedSpawn({"/bin/true"});
  long arg_max = sysconf(_SC_ARG_MAX);
  std::string big(64 * 1024, 'a');
  for (long total = 0; total <= arg_max; total += big.size()) request.add_argv(big);
  grpc::Status s = Spawn(request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("ARG_MAX"));
}

TEST_P(BadInputTest, BadCwdAndRlimits) {
  SpawnRequest cwd = PipedSpawn({"/bin/true"});
  cwd.set_cwd("/does/not/exist");
  grpc::Status s = Spawn(cwd);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("chdir(/does/not/exist)"));

  SpawnRequest rlimit = PipedSpawn({"/bin/true"});
  rlimit.add_rlimits()->set_resource("BOGUS");
  EXPECT_EQ(Spawn(rlimit).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  SpawnRequest inverted = PipedSpawn({"/bin/true"});
  auto* r = inverted.add_rlimits();
  r->set_resource("NOFILE");
  r->set_soft(10);
  r->set_hard(5);
  EXPECT_EQ(Spawn(inverted).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  SpawnRequest umask = PipedSpawn({"/bin/true"});
  umask.set_umask(01000);
  EXPECT_EQ(Spawn(umask).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(BadInputTest, UnknownHandle) {
  for (const std::string id : {"", "deadbeefdeadbeefdeadbeefdeadbeef", "../x"}) {
    procwarp::v1::WaitRequest wait;
    wait.set_id(id);
    procwarp::v1::WaitResponse waited;
    grpc::Status s = stub_->Wait(Ctx().get(), wait, &waited);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << id;
    EXPECT_THAT(s.error_message(), HasSubstr("no process with id"));
    procwarp::v1::SignalRequest signal;
    signal.set_id(id);
    signal.set_signal(SIGTERM);
    procwarp::v1::SignalResponse signalled;
    EXPECT_EQ(stub_->Signal(Ctx().get(), signal, &signalled).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  AttachOutcome attach = AttachAndCollect(stub_.get(), "nope");
  EXPECT_EQ(attach.status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(BadInputTest, NegativeOrHugeSignal) {
  procwarp::v1::SpawnResponse spawned;
  ASSERT_TRUE(stub_->Spawn(Ctx().get(), PipedSpawn({"/bin/sleep", "100"}), &spawned).ok());
  for (int sig : {-1, -9, 65, 1 << 20}) {
    procwarp::v1::SignalRequest request;
    request.set_id(spawned.process().id());
    request.set_signal(sig);
    procwarp::v1::SignalResponse response;
    grpc::Status s = stub_->Signal(Ctx().get(), request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << sig;
    EXPECT_THAT(s.error_message(), HasSubstr("out of range"));
  }
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  remove.set_force(true);
  procwarp::v1::RemoveProcessResponse removed;
  EXPECT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
}

TEST_P(BadInputTest, ResizeWithoutPtyOrWithZeroSize) {
  procwarp::v1::SpawnResponse spawned;
  ASSERT_TRUE(stub_->Spawn(Ctx().get(), PipedSpawn({"/bin/sleep", "100"}), &spawned).ok());
  procwarp::v1::ResizePtyRequest resize;
  resize.set_id(spawned.process().id());
  procwarp::v1::ResizePtyResponse resized;
  EXPECT_EQ(stub_->ResizePty(Ctx().get(), resize, &resized).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  resize.mutable_size()->set_rows(10);
  resize.mutable_size()->set_cols(10);
  EXPECT_EQ(stub_->ResizePty(Ctx().get(), resize, &resized).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  remove.set_force(true);
  procwarp::v1::RemoveProcessResponse removed;
  EXPECT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
}

TEST_P(BadInputTest, AttachWithoutFirstMessage) {
  auto ctx = Ctx();
  auto stream = stub_->Attach(ctx.get());
  stream->WritesDone();
  procwarp::v1::AttachResponse r;
  EXPECT_FALSE(stream->Read(&r));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(BadInputTest, OnlyAdminsChooseUid) {
  // Root is admin: choosing a uid works.
  SpawnRequest as_nobody = PipedSpawn({"/usr/bin/id", "-u"});
  as_nobody.set_uid(65534);
  as_nobody.set_gid(65534);
  procwarp::v1::SpawnResponse spawned;
  ASSERT_TRUE(stub_->Spawn(Ctx().get(), as_nobody, &spawned).ok());
  AttachOutcome out = AttachAndCollect(stub_.get(), spawned.process().id());
  EXPECT_EQ(out.stdout_data, "65534\n");
}

}  // namespace
}  // namespace procwarp::testing
