// Unit tests for the CLI's pure parts: signal names, id prefix matching,
// the child environment, and the text and JSON it prints (py stack's too).
#include <signal.h>

#include "absl/strings/str_replace.h"
#include "client/cli/commands.h"
#include "client/cli/output.h"
#include "client/cli/process_id.h"
#include "client/cli/python_stack_commands.h"
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
  // A backslash alone needs no escaping: it is literal inside '...'.
  EXPECT_EQ(ShellJoin({"printf", "a\\tb"}), "printf 'a\\tb'");
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

// ---------------------------------------------------------------------------
// Escaping: nothing from the daemon or another user reaches the terminal raw.

// Another user's window-title escape sequence (OSC 0 ... BEL).
constexpr char kTitleEscape[] = "\x1b]0;pwned\x07";

// Whether `text` holds a byte a terminal acts on: C0 controls, DEL, or a
// UTF-8 encoded C1 control (0xc2 0x80-0x9f).
bool HasTerminalControls(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = text[i];
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xc2 && i + 1 < text.size() &&
        static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      return true;
    }
  }
  return false;
}

TEST(EscapeForTerminalTest, ControlCharactersBecomeCEscapes) {
  EXPECT_EQ(EscapeForTerminal(kTitleEscape), "\\x1b]0;pwned\\x07");
  EXPECT_EQ(EscapeForTerminal("a\nb\tc\rd"), "a\\nb\\tc\\rd");
  EXPECT_EQ(EscapeForTerminal(std::string("nul\0del\x7f", 8)),
            "nul\\x00del\\x7f");
  // A backslash is doubled, so "\x1b" typed literally cannot pass for ESC.
  EXPECT_EQ(EscapeForTerminal("C:\\x1b"), "C:\\\\x1b");
}

TEST(EscapeForTerminalTest, PrintableTextAndUtf8PassUnchanged) {
  EXPECT_EQ(EscapeForTerminal(""), "");
  EXPECT_EQ(EscapeForTerminal("/bin/sleep 100 'quoted' \"x\" ~!@#$%^&*()"),
            "/bin/sleep 100 'quoted' \"x\" ~!@#$%^&*()");
  EXPECT_EQ(EscapeForTerminal("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\xa7"),
            "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\xa7");
}

TEST(EscapeForTerminalTest, C1ControlsAndBidiOverridesAreEscaped) {
  // U+009B is CSI for a terminal; U+202E reverses what follows on screen.
  EXPECT_EQ(EscapeForTerminal("a\xc2\x9b" "31mb"), "a\\u009b31mb");
  EXPECT_EQ(EscapeForTerminal("x\xe2\x80\xaey"), "x\\u202ey");
  EXPECT_EQ(EscapeForTerminal("\xe2\x81\xa6\xe2\x80\xa8"), "\\u2066\\u2028");
}

TEST(EscapeForTerminalTest, InvalidUtf8BytesAreEscaped) {
  // A raw 8-bit CSI, a stray continuation byte, a truncated sequence, an
  // overlong encoding of '/', a UTF-16 surrogate.
  EXPECT_EQ(EscapeForTerminal("\x9b" "31m"), "\\x9b31m");
  EXPECT_EQ(EscapeForTerminal("a\x80"), "a\\x80");
  EXPECT_EQ(EscapeForTerminal("\xe6\x97"), "\\xe6\\x97");
  EXPECT_EQ(EscapeForTerminal("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_EQ(EscapeForTerminal("\xed\xa0\x80"), "\\xed\\xa0\\x80");
}

TEST(EscapeForTerminalTest, NoByteSequenceGetsThroughRaw) {
  // Every single byte and every byte pair: the result never holds a
  // terminal control.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const std::string text = {static_cast<char>(a), static_cast<char>(b)};
      const std::string escaped = EscapeForTerminal(text);
      ASSERT_FALSE(HasTerminalControls(escaped)) << a << " " << b;
    }
  }
}

TEST(ShellJoinTest, WordsWithControlsUseBashDollarQuotes) {
  EXPECT_EQ(ShellJoin({"/bin/sh", "-c", std::string("echo ") + kTitleEscape}),
            "/bin/sh -c $'echo \\x1b]0;pwned\\x07'");
  EXPECT_EQ(ShellJoin({"it's\n\\"}), "$'it\\'s\\n\\\\'");
}

TEST(FormatProcessTableTest, EscapesAnotherUsersArgvAndId) {
  v1::ProcessInfo process;
  process.set_id(std::string("id\x1b[2J"));
  process.set_pid(7);
  process.set_uid(65534);
  process.set_state(v1::PROCESS_STATE_RUNNING);
  process.add_argv("/bin/sh");
  process.add_argv("-c");
  process.add_argv(std::string("echo ") + kTitleEscape);
  const std::string table = FormatProcessTable({process});
  EXPECT_FALSE(HasTerminalControls(absl::StrReplaceAll(table, {{"\n", ""}})));
  EXPECT_THAT(table, HasSubstr("id\\x1b[2J"));
  EXPECT_THAT(table, HasSubstr("/bin/sh -c $'echo \\x1b]0;pwned\\x07'\n"));
}

TEST(FormatEventTest, EscapesAnotherUsersArgvAndId) {
  v1::ProcessEvent event;
  event.set_kind(v1::ProcessEvent::KIND_STARTED);
  event.mutable_process()->set_id(std::string("e\r"));
  event.mutable_process()->add_argv(kTitleEscape);
  const std::string line = FormatEvent(event);
  EXPECT_FALSE(HasTerminalControls(line));
  EXPECT_THAT(line, HasSubstr(" started e\\r pid=0 $'\\x1b]0;pwned\\x07'"));
}

TEST(ToJsonTest, EscapesEveryTerminalControl) {
  v1::ProcessInfo process;
  process.add_argv(kTitleEscape);
  process.add_argv("csi \xc2\x9b del \x7f rlo \xe2\x80\xae nl \n");
  (*process.mutable_labels())["name"] = kTitleEscape;
  const std::string json = ToJson(process).value();
  EXPECT_FALSE(HasTerminalControls(json)) << json;
  EXPECT_THAT(json, HasSubstr("\"\\u001b]0;pwned\\u0007\""));
  EXPECT_THAT(json,
              HasSubstr("csi \\u009b del \\u007f rlo \\u202e nl \\n"));
  EXPECT_THAT(json, HasSubstr("\"name\":\"\\u001b]0;pwned\\u0007\""));
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

TEST(FormatPythonStackTest, ThreadLinesAreLikePySpyDump) {
  snapshots::v1::PythonStackResponse stack;
  stack.mutable_interpreter()->set_implementation("CPython");
  stack.mutable_interpreter()->set_version("3.12.1");
  stack.mutable_interpreter()->set_object("libpython3.12.so.1.0");
  auto* main = stack.add_threads();
  main->set_tid(100);
  main->set_is_main(true);
  main->set_idle(true);
  main->set_name("MainThread");
  auto* worker = stack.add_threads();
  worker->set_tid(101);
  worker->set_holds_gil(true);
  worker->set_name("worker-7\x1b[2J");  // a terminal escape is not passed on
  auto* raw = stack.add_threads();  // _thread.start_new_thread: no name
  raw->set_tid(102);
  raw->set_idle(true);
  const std::string text = FormatPythonStack(100, stack, /*colour=*/false);
  EXPECT_THAT(text, HasSubstr("\nThread 100 (idle): \"MainThread\"\n"));
  EXPECT_THAT(text, HasSubstr("\nThread 101 (active+gil): \"worker-7"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("\x1b")));
  EXPECT_THAT(text, HasSubstr("\nThread 102 (idle)\n"));
}

TEST(FormatPythonStackTest, NativeFramesMergedOrBesideThePythonOnes) {
  snapshots::v1::PythonStackResponse stack;
  auto* merged = stack.add_threads();
  merged->set_tid(100);
  merged->set_native_stack(snapshots::v1::NATIVE_STACK_MERGED);
  auto* python = merged->add_frames();
  python->set_function("inner");
  python->set_file("t.py");
  python->set_line(7);
  auto* sleep = merged->add_frames();
  sleep->set_is_native(true);
  sleep->set_function("clock_nanosleep");
  sleep->set_native_symbol_offset(0x53);
  sleep->set_file("/lib/libc.so.6");
  sleep->set_line(-1);
  auto* separate = stack.add_threads();
  separate->set_tid(101);
  separate->set_native_stack(snapshots::v1::NATIVE_STACK_SEPARATE);
  separate->set_native_note("no loop\x1b[2J");
  auto* anonymous = separate->add_native_frames();
  anonymous->set_is_native(true);
  anonymous->set_native_address(0x401000);
  anonymous->set_native_elf_address(0x1000);
  anonymous->set_file("/usr/bin/python3");
  const std::string text = FormatPythonStack(100, stack, /*colour=*/false);
  EXPECT_THAT(text, HasSubstr("\n    inner (t.py:7)\n"
                              "    clock_nanosleep+0x53 (/lib/libc.so.6) [native]\n"));
  EXPECT_THAT(text, HasSubstr("  Native frames (not merged: no loop"));
  EXPECT_THAT(text, HasSubstr("    0x401000 (/usr/bin/python3+0x1000) [native]\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("\x1b")));
}

}  // namespace
}  // namespace procwarp::cli
