// Unit tests for the CLI's pure parts: signal names, id prefix matching,
// the child environment, and the text and JSON it prints.
#include <signal.h>

#include "client/cli/commands.h"
#include "client/cli/output.h"
#include "client/cli/process_id.h"
#include "client/cli/signals.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseSignalTest, AcceptsNumbersAndNames) {
  EXPECT_EQ(ParseSignal("9").value(), SIGKILL);
  EXPECT_EQ(ParseSignal("KILL").value(), SIGKILL);
  EXPECT_EQ(ParseSignal("SIGKILL").value(), SIGKILL);
  EXPECT_EQ(ParseSignal("term").value(), SIGTERM);
  EXPECT_EQ(ParseSignal("SigHup").value(), SIGHUP);
  EXPECT_EQ(ParseSignal("usr1").value(), SIGUSR1);
  EXPECT_EQ(ParseSignal("40").value(), 40);
}

TEST(ParseSignalTest, RejectsTheRest) {
  EXPECT_EQ(ParseSignal("0").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSignal("65").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSignal("-9").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ParseSignal("SIGFOO").status().message(),
              HasSubstr("unknown signal 'SIGFOO'"));
  EXPECT_FALSE(ParseSignal("").ok());
}

TEST(SignalNameTest, Names) {
  EXPECT_EQ(SignalName(SIGTERM), "SIGTERM");
  EXPECT_EQ(SignalName(40), "SIG40");
}

std::vector<v1::ProcessInfo> Processes(std::vector<std::string> ids) {
  std::vector<v1::ProcessInfo> processes;
  for (const std::string& id : ids) processes.emplace_back().set_id(id);
  return processes;
}

TEST(MatchIdPrefixTest, ExactAndUniquePrefixes) {
  const auto processes = Processes({"abc123", "abd456", "abc"});
  EXPECT_EQ(MatchIdPrefix("abc123", processes).value(), "abc123");
  // An exact id wins over longer ids it is a prefix of.
  EXPECT_EQ(MatchIdPrefix("abc", processes).value(), "abc");
  EXPECT_EQ(MatchIdPrefix("abd", processes).value(), "abd456");
  EXPECT_EQ(MatchIdPrefix("abc1", processes).value(), "abc123");
}

TEST(MatchIdPrefixTest, AmbiguousMissingAndEmpty) {
  const auto processes = Processes({"abc123", "abd456"});
  absl::StatusOr<std::string> ambiguous = MatchIdPrefix("ab", processes);
  EXPECT_EQ(ambiguous.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ambiguous.status().message(), HasSubstr("abc123, abd456"));
  EXPECT_EQ(MatchIdPrefix("x", processes).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(MatchIdPrefix("", processes).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BuildChildEnvTest, EmptyByDefault) {
  EXPECT_THAT(BuildChildEnv({}, false, {"HOME=/root"}).value(),
              ElementsAre());
}

TEST(BuildChildEnvTest, AssignmentsCopiesAndOverrides) {
  const std::vector<std::string> own = {"HOME=/root", "PATH=/bin", "X=1"};
  EXPECT_THAT(BuildChildEnv({"A=1", "PATH", "A=2", "MISSING", "E="}, false, own)
                  .value(),
              ElementsAre("A=2", "PATH=/bin", "E="));
  EXPECT_THAT(BuildChildEnv({"X=2", "NEW=v=w"}, true, own).value(),
              ElementsAre("HOME=/root", "PATH=/bin", "X=2", "NEW=v=w"));
}

TEST(BuildChildEnvTest, RejectsEmptyNames) {
  EXPECT_EQ(BuildChildEnv({"=x"}, false, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildChildEnv({""}, false, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShellJoinTest, QuotesWhatAShellWouldSplit) {
  EXPECT_EQ(ShellJoin({"/bin/echo", "hello"}), "/bin/echo hello");
  EXPECT_EQ(ShellJoin({"sh", "-c", "echo out; exit 3"}),
            "sh -c 'echo out; exit 3'");
  EXPECT_EQ(ShellJoin({"echo", "it's", ""}), "echo 'it'\\''s' ''");
}

v1::ProcessInfo ExitedProcess() {
  v1::ProcessInfo process;
  process.set_id("0123456789abcdef0123");
  process.set_pid(4242);
  process.set_state(v1::PROCESS_STATE_EXITED);
  process.mutable_exit_status()->set_signal(SIGKILL);
  process.set_uid(0);
  process.add_argv("/bin/sleep");
  process.add_argv("100");
  return process;
}

TEST(FormatProcessTableTest, ColumnsAndShortIds) {
  v1::ProcessInfo running;
  running.set_id("ffff");
  running.set_pid(7);
  running.set_state(v1::PROCESS_STATE_RUNNING);
  running.set_uid(1000);
  running.add_argv("sh");
  EXPECT_EQ(FormatProcessTable({ExitedProcess(), running}),
            "ID            PID   STATE    EXIT     UID   COMMAND\n"
            "0123456789ab  4242  exited   SIGKILL  0     /bin/sleep 100\n"
            "ffff          7     running  -        1000  sh\n");
}

TEST(FormatEventTest, OneLine) {
  v1::ProcessEvent event;
  event.set_kind(v1::ProcessEvent::KIND_EXITED);
  event.set_unix_ns(1700000000123456789);
  *event.mutable_process() = ExitedProcess();
  EXPECT_EQ(FormatEvent(event),
            "2023-11-14T22:13:20.123Z exited 0123456789abcdef0123 pid=4242 "
            "killed by signal 9 (KILL) /bin/sleep 100");
}

TEST(ToJsonTest, ProtoFieldNamesAndDefaults) {
  v1::ProcessInfo process;
  process.set_id("x");
  process.set_has_pty(false);
  process.mutable_exit_status()->set_code(0);
  const std::string json = ToJson(process).value();
  EXPECT_THAT(json, HasSubstr("\"id\":\"x\""));
  EXPECT_THAT(json, HasSubstr("\"has_pty\":false"));
  EXPECT_THAT(json, HasSubstr("\"pid\":0"));
  EXPECT_THAT(json, HasSubstr("\"code\":0"));
  EXPECT_THAT(json, HasSubstr("\"state\":\"PROCESS_STATE_UNSPECIFIED\""));
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

TEST(FormatStatusTest, Text) {
  StatusOutput output;
  output.set_socket_path("/tmp/p.sock");
  output.mutable_version()->set_version("0.1.0");
  output.mutable_version()->add_api_versions("procwarp.v1");
  output.mutable_status()->set_uptime_ms(3723500);
  output.mutable_status()->set_clients(2);
  output.mutable_status()->set_processes(3);
  output.mutable_status()->set_running_processes(1);
  output.mutable_status()->set_daemon_pid(99);
  output.mutable_status()->mutable_caller()->set_uid(0);
  output.mutable_status()->mutable_caller()->set_pid(1234);
  output.mutable_status()->mutable_caller()->set_admin(true);
  EXPECT_EQ(FormatStatus(output),
            "daemon:     procwarpd 0.1.0 (pid 99, api procwarp.v1)\n"
            "socket:     /tmp/p.sock\n"
            "uptime:     1h2m3s\n"
            "clients:    2\n"
            "processes:  3 (1 running)\n"
            "caller:     uid 0, gid 0, pid 1234, admin\n");
  output.mutable_status()->set_uptime_ms(999);
  EXPECT_THAT(FormatStatus(output), HasSubstr("uptime:     0s\n"));
}

}  // namespace
}  // namespace procwarp::cli
