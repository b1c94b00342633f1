// The Admin service, standard health checking and server reflection.
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_harness.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "tests/integration/protos/reflection.grpc.pb.h"

namespace procwarp::testing {
namespace {

using ::testing::Contains;

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonHarness::Start();
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
  }
  std::unique_ptr<DaemonHarness> daemon_;
};

TEST_F(AdminTest, VersionAndStatus) {
  auto admin = daemon_->Admin();
  procwarp::v1::GetVersionResponse version;
  ASSERT_TRUE(admin->GetVersion(Ctx().get(), {}, &version).ok());
  EXPECT_FALSE(version.version().empty());
  EXPECT_THAT(version.api_versions(), Contains("procwarp.v1"));

  procwarp::v1::SpawnResponse spawned;
  ASSERT_TRUE(daemon_->Processes()
                  ->Spawn(Ctx().get(), PipedSpawn({"/bin/sleep", "100"}), &spawned)
                  .ok());
  procwarp::v1::GetStatusResponse status;
  ASSERT_TRUE(admin->GetStatus(Ctx().get(), {}, &status).ok());
  EXPECT_EQ(status.daemon_pid(), daemon_->pid());
  EXPECT_GE(status.clients(), 1);
  EXPECT_EQ(status.processes(), 1);
  EXPECT_EQ(status.running_processes(), 1);
  EXPECT_GE(status.uptime_ms(), 0);
  EXPECT_EQ(status.caller().uid(), 0u);
  EXPECT_TRUE(status.caller().admin());
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  remove.set_force(true);
  procwarp::v1::RemoveProcessResponse removed;
  EXPECT_TRUE(daemon_->Processes()->Remove(Ctx().get(), remove, &removed).ok());
}

TEST_F(AdminTest, HealthCheckServing) {
  auto health = grpc::health::v1::Health::NewStub(daemon_->NewChannel());
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(Ctx().get(), {}, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(AdminTest, HealthCheckNamesServices) {
  auto health = grpc::health::v1::Health::NewStub(daemon_->NewChannel());
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  for (const char* service : {"procwarp.v1.Processes", "procwarp.v1.Threads",
                              "procwarp.v1.Memory", "procwarp.v1.Files",
                              "procwarp.v1.Admin"}) {
    request.set_service(service);
    ASSERT_TRUE(health->Check(Ctx().get(), request, &response).ok()) << service;
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
  request.set_service("no.such.Service");
  EXPECT_EQ(health->Check(Ctx().get(), request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminTest, HealthWatchSeesShutdown) {
  auto health = grpc::health::v1::Health::NewStub(daemon_->NewChannel());
  auto ctx = Ctx();
  auto watch = health->Watch(ctx.get(), {});
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // The stream reports NOT_SERVING and ends at once: left open, it would
  // hold up the daemon's exit until the shutdown grace period (5 s) cancels
  // it.
  absl::Time stopping = absl::Now();
  std::thread stop([&] { EXPECT_EQ(daemon_->Stop(), 0); });
  absl::Cleanup join_stop = [&] { stop.join(); };
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(watch->Read(&response));
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_LT(absl::Now() - stopping, absl::Seconds(3));
}

// A connected client with no call in progress does not hold the daemon's
// stop: with a shutdown grace of an hour, the daemon still stops (an idle
// gRPC client would notice the GOAWAY only on its 5 s backup poll, and the
// daemon used to wait for that; see StopServing in daemon/main.cc). A
// regression shows as this test running into its timeout.
TEST(AdminStopTest, IdleClientsDoNotHoldTheStop) {
  DaemonHarness::Options options;
  options.flags = {"--shutdown_grace_ms=3600000"};
  auto daemon = DaemonHarness::Start(options);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::vector<std::unique_ptr<procwarp::v1::Admin::Stub>> idle_clients;
  for (int i = 0; i < 3; ++i) {
    idle_clients.push_back(procwarp::v1::Admin::NewStub((*daemon)->NewChannel()));
    procwarp::v1::GetStatusResponse status;
    ASSERT_TRUE(
        idle_clients.back()->GetStatus(Ctx().get(), {}, &status).ok());
  }
  EXPECT_EQ((*daemon)->Stop(), 0);
}

TEST_F(AdminTest, HealthWatchUnknownServiceStaysOpen) {
  auto health = grpc::health::v1::Health::NewStub(daemon_->NewChannel());
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("no.such.Service");
  auto watch = health->Watch(&ctx, request);
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(),
            grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN);
  ctx.TryCancel();
  EXPECT_FALSE(watch->Read(&response));
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The daemon still serves.
  grpc::health::v1::HealthCheckResponse check;
  EXPECT_TRUE(health->Check(Ctx().get(), {}, &check).ok());
}

TEST_F(AdminTest, ReflectionListsServices) {
  auto reflection =
      grpc::reflection::v1alpha::ServerReflection::NewStub(daemon_->NewChannel());
  auto ctx = Ctx();
  auto stream = reflection->ServerReflectionInfo(ctx.get());
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("*");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> names;
  for (const auto& s : response.list_services_response().service()) {
    names.push_back(s.name());
  }
  EXPECT_THAT(names, Contains("procwarp.v1.Processes"));
  EXPECT_THAT(names, Contains("procwarp.v1.Admin"));
  EXPECT_THAT(names, Contains("grpc.health.v1.Health"));
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace procwarp::testing
