// Where the CLI's connection settings come from: flag, then PROCWARP_*
// variable, then the chosen context of the config file (target.h).
#include "client/cli/target.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace procwarp::cli {
namespace {

using ::testing::HasSubstr;

class TargetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("procwarp-target-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    config_ = (dir_ / "config").string();
    env_ = [this](const char* name) -> const char* {
      auto it = vars_.find(name);
      return it == vars_.end() ? nullptr : it->second.c_str();
    };
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteConfig(const std::string& text) { std::ofstream(config_) << text; }

  std::filesystem::path dir_;
  std::string config_;
  std::map<std::string, std::string> vars_;
  EnvLookup env_;
};

TEST_F(TargetTest, NothingGivenIsTheLocalDefault) {
  auto t = ResolveTarget({}, env_, config_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->host.empty());
  EXPECT_TRUE(t->socket_path.empty());
  EXPECT_TRUE(t->context.empty());
}

TEST_F(TargetTest, FlagsBeatEnvironmentWhichBeatsTheContextOfTheSameHost) {
  WriteConfig(R"(
    current_context: "lab"
    contexts { name: "lab" host: "lab:7443" ca: "lab/ca.pem"
               cert: "~/alice.pem" key: "/abs/alice.key" }
  )");
  vars_ = {{"HOME", "/home/alice"}};
  auto from_context = ResolveTarget({}, env_, config_);
  ASSERT_TRUE(from_context.ok()) << from_context.status();
  EXPECT_EQ(from_context->host, "lab:7443");
  EXPECT_EQ(from_context->context, "lab");
  EXPECT_EQ(from_context->tls.ca, (dir_ / "lab/ca.pem").string());
  EXPECT_EQ(from_context->tls.cert, "/home/alice/alice.pem");
  EXPECT_EQ(from_context->tls.key, "/abs/alice.key");

  vars_["PROCWARP_HOST"] = "env:1";
  vars_["PROCWARP_CA"] = "/env/ca.pem";
  auto from_env = ResolveTarget({}, env_, config_);
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->host, "env:1");
  EXPECT_EQ(from_env->tls.ca, "/env/ca.pem");
  // Another host: the current context's certificate is not lent to it...
  EXPECT_EQ(from_env->tls.key, "");
  // ...unless that context is asked for by name.
  GlobalOptions named;
  named.context = "lab";
  auto from_named = ResolveTarget(named, env_, config_);
  ASSERT_TRUE(from_named.ok());
  EXPECT_EQ(from_named->host, "env:1");
  EXPECT_EQ(from_named->tls.key, "/abs/alice.key");

  GlobalOptions flags;
  flags.host = "flag:2";
  flags.cert = "/flag/c.pem";
  auto from_flags = ResolveTarget(flags, env_, config_);
  ASSERT_TRUE(from_flags.ok());
  EXPECT_EQ(from_flags->host, "flag:2");
  EXPECT_EQ(from_flags->tls.cert, "/flag/c.pem");
  EXPECT_EQ(from_flags->tls.ca, "/env/ca.pem");
}

TEST_F(TargetTest, ContextIsChosenByFlagThenEnvironmentThenFile) {
  WriteConfig(R"(
    current_context: "a"
    contexts { name: "a" host: "a:1" ca: "/ca" }
    contexts { name: "b" host: "b:1" ca: "/ca" }
    contexts { name: "local" socket: "/run/x.sock" }
  )");
  EXPECT_EQ(ResolveTarget({}, env_, config_)->host, "a:1");
  vars_["PROCWARP_CONTEXT"] = "b";
  EXPECT_EQ(ResolveTarget({}, env_, config_)->host, "b:1");
  GlobalOptions flags;
  flags.context = "local";
  auto local = ResolveTarget(flags, env_, config_);
  ASSERT_TRUE(local.ok());
  EXPECT_TRUE(local->host.empty());
  EXPECT_EQ(local->socket_path, "/run/x.sock");
  flags.context = "nope";
  auto unknown = ResolveTarget(flags, env_, config_);
  EXPECT_TRUE(absl::IsNotFound(unknown.status()));
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("a, b, local"));
}

TEST_F(TargetTest, SocketFlagMeansLocalAndConflictsWithHost) {
  vars_["PROCWARP_HOST"] = "env:1";
  GlobalOptions flags;
  flags.socket_path = "/tmp/s.sock";
  auto t = ResolveTarget(flags, env_, config_);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->host.empty());
  EXPECT_EQ(t->socket_path, "/tmp/s.sock");
  flags.host = "h:1";
  EXPECT_TRUE(absl::IsInvalidArgument(ResolveTarget(flags, env_, config_).status()));
}

TEST_F(TargetTest, MalformedConfigIsAnError) {
  WriteConfig("contexts { name: ");
  auto t = ResolveTarget({}, env_, config_);
  EXPECT_TRUE(absl::IsInvalidArgument(t.status()));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr(config_));
}

}  // namespace
}  // namespace procwarp::cli
