// The pure parts of the Exec subcommands: pid parsing, and the human forms
// of a crash and of the preflight (other users' text escaped).
#include "client/cli/exec_commands.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace procwarp::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ExecCommandsTest, ParsesPositivePidsOnly) {
  EXPECT_EQ(*ParsePid("4242"), 4242);
  EXPECT_FALSE(ParsePid("0").ok());
  EXPECT_FALSE(ParsePid("-1").ok());
  EXPECT_FALSE(ParsePid("12abc").ok());
  EXPECT_FALSE(ParsePid("").ok());
}

TEST(ExecCommandsTest, CrashNamesSignalAndAddresses) {
  exec::v1::Crash crash;
  crash.set_signal(11);
  crash.set_signal_name("SIGSEGV");
  crash.set_fault_address(0);
  crash.set_rip(0x401000);
  EXPECT_EQ(FormatCrash(crash),
            "crashed: SIGSEGV at fault address 0x0 (rip 0x401000); the target "
            "was put back as it was and runs on");
}

TEST(ExecCommandsTest, PreflightShowsVerdictsFixesAndEscapesText) {
  exec::v1::PreflightResponse preflight;
  auto* daemon = preflight.add_daemon();
  daemon->set_name("yama");
  daemon->set_verdict(exec::v1::VERDICT_INFO);
  daemon->set_detail("no Yama");
  std::string daemon_only = FormatPreflight(preflight);
  EXPECT_EQ(daemon_only, "procwarpd:\n  info  yama                      no Yama\n");
  auto* facts = preflight.mutable_facts();
  facts->set_pid(4242);
  facts->add_ns_pids(4242);
  facts->add_ns_pids(7);
  facts->set_comm("evil\x1b]0;x\a");
  facts->set_state("T (stopped)");
  auto* check = preflight.add_target();
  check->set_name("state");
  check->set_verdict(exec::v1::VERDICT_FAIL);
  check->set_detail("stopped");
  check->set_fix("kill -CONT 4242");
  std::string text = FormatPreflight(preflight);
  EXPECT_THAT(text, HasSubstr("pid 4242 (evil\\x1b]0;x\\x07), pid 7 in its own pid namespace"));
  EXPECT_THAT(text, Not(HasSubstr("\x1b")));
  EXPECT_THAT(text, HasSubstr("  FAIL  state"));
  EXPECT_THAT(text, HasSubstr("        fix: kill -CONT 4242\n"));
  EXPECT_THAT(text, HasSubstr("call: will not work\ninject: will not work\n"));
}

}  // namespace
}  // namespace procwarp::cli
