// Unit tests for the pure parts of `procwarp thread`: the generated syscall
// table, argument parsing, result formatting, thread id prefixes and the
// `thread ls` table.
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>

#include "client/cli/attach_commands.h"
#include "client/cli/syscall_names.h"
#include "client/cli/thread_commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace procwarp::cli {
namespace {

using ::testing::HasSubstr;

TEST(SyscallNamesTest, GeneratedTableMatchesTheLibcNumbers) {
  EXPECT_EQ(SyscallNumberByName("read"), SYS_read);
  EXPECT_EQ(SyscallNumberByName("getpid"), SYS_getpid);
  EXPECT_EQ(SyscallNumberByName("close"), SYS_close);
  EXPECT_EQ(SyscallNumberByName("kill"), SYS_kill);
  EXPECT_EQ(SyscallNumberByName("openat"), SYS_openat);
  EXPECT_EQ(SyscallNumberByName("pidfd_getfd"), SYS_pidfd_getfd);
  EXPECT_EQ(SyscallNumberByName("nope"), std::nullopt);
  EXPECT_EQ(SyscallName(SYS_getpid), "getpid");
  EXPECT_EQ(SyscallName(100000), "");
}

TEST(SyscallNamesTest, ParsesNamesAndNumbers) {
  EXPECT_EQ(ParseSyscall("getpid").value(), SYS_getpid);
  EXPECT_EQ(ParseSyscall("39").value(), 39);
  EXPECT_EQ(ParseSyscall("GETPID").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSyscall("-1").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SyscallNamesTest, ParsesIntegerArguments) {
  EXPECT_EQ(ParseSyscallArg("0").value(), 0);
  EXPECT_EQ(ParseSyscallArg("9999").value(), 9999);
  EXPECT_EQ(ParseSyscallArg("-100").value(), -100);
  EXPECT_EQ(ParseSyscallArg("0x10").value(), 16);
  EXPECT_EQ(ParseSyscallArg("0XfF").value(), 255);
  EXPECT_EQ(ParseSyscallArg("0xffffffffffffffff").value(), -1);
  EXPECT_FALSE(ParseSyscallArg("").ok());
  EXPECT_FALSE(ParseSyscallArg("0x").ok());
  EXPECT_FALSE(ParseSyscallArg("12ab").ok());
  EXPECT_FALSE(ParseSyscallArg("-").ok());
}

TEST(SyscallNamesTest, FormatsResultsLikeStrace) {
  EXPECT_EQ(FormatSyscallResult({.value = 42}), "42");
  EXPECT_EQ(FormatSyscallResult(
                {.value = -1, .error = EBADF, .error_name = "EBADF"}),
            "-1 EBADF (Bad file descriptor)");
  EXPECT_EQ(FormatSyscallResult({.value = -1, .error = ENOENT}),
            "-1 ENOENT (No such file or directory)");
}

v1::ThreadInfo ThreadWithId(const std::string& id) {
  v1::ThreadInfo thread;
  thread.set_id(id);
  return thread;
}

TEST(MatchThreadIdPrefixTest, ExactUniqueAmbiguousMissing) {
  std::vector<v1::ThreadInfo> threads = {ThreadWithId("abc123"),
                                         ThreadWithId("abd456"),
                                         ThreadWithId("abc")};
  EXPECT_EQ(MatchThreadIdPrefix("abc", threads).value(), "abc");
  EXPECT_EQ(MatchThreadIdPrefix("abd", threads).value(), "abd456");
  EXPECT_EQ(MatchThreadIdPrefix("ab", threads).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MatchThreadIdPrefix("x", threads).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(MatchThreadIdPrefix("", threads).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FormatThreadTableTest, ShowsStateNamespacesAndName) {
  v1::ThreadInfo thread = ThreadWithId("0123456789abcdef0123");
  thread.set_pid(4242);
  thread.set_state(v1::THREAD_STATE_RUNNING);
  thread.set_persistent(true);
  thread.mutable_namespaces()->set_user(true);
  thread.mutable_namespaces()->set_net(true);
  (*thread.mutable_labels())["name"] = "poke";
  std::string table = FormatThreadTable({thread});
  EXPECT_THAT(table, HasSubstr("0123456789ab "));
  EXPECT_THAT(table, HasSubstr("4242"));
  EXPECT_THAT(table, HasSubstr("running"));
  EXPECT_THAT(table, HasSubstr("yes"));
  EXPECT_THAT(table, HasSubstr("user,net"));
  EXPECT_THAT(table, HasSubstr("poke"));
}

TEST(FormatThreadTableTest, EscapesAnotherUsersNameAndId) {
  v1::ThreadInfo thread = ThreadWithId("id\x1b[2J");
  thread.set_uid(65534);
  (*thread.mutable_labels())["name"] = "\x1b]0;pwned\x07";
  const std::string table = FormatThreadTable({thread});
  EXPECT_EQ(table.find('\x1b'), std::string::npos);
  EXPECT_EQ(table.find('\x07'), std::string::npos);
  EXPECT_THAT(table, HasSubstr("id\\x1b[2J"));
  EXPECT_THAT(table, HasSubstr("\\x1b]0;pwned\\x07\n"));
}

TEST(FdsTest, TypesAndFlags) {
  EXPECT_EQ(FdType("socket:[123]"), "socket");
  EXPECT_EQ(FdType("pipe:[9]"), "pipe");
  EXPECT_EQ(FdType("anon_inode:[eventfd]"), "anon_inode");
  EXPECT_EQ(FdType("/dev/null"), "device");
  EXPECT_EQ(FdType("/etc/hostname"), "file");
  v1::FdInfo fd;
  fd.set_flags(O_WRONLY | O_APPEND);
  fd.set_cloexec(true);
  EXPECT_EQ(FdFlags(fd), "w,append,cloexec");
  fd.set_flags(O_RDWR | O_NONBLOCK);
  fd.set_cloexec(false);
  EXPECT_EQ(FdFlags(fd), "rw,nonblock");
}

TEST(FdsTest, DescribesSocketsFromProcNet) {
  const std::vector<std::pair<std::string, std::string>> net = {
      {"unix",
       "Num       RefCount Protocol Flags    Type St Inode Path\n"
       "0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/x.sock\n"
       "0000000000000000: 00000002 00000000 00000000 0001 03 4343\n"},
      {"tcp",
       "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
       "retrnsmt   uid  timeout inode\n"
       "   0: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 "
       "00000000     0        0 5151 1 0000000000000000 100 0 0 10 0\n"
       "   1: 0100007F:0050 0200000A:15B3 01 00000000:00000000 00:00000000 "
       "00000000     0        0 5252 1 0000000000000000 100 0 0 10 0\n"},
      {"tcp6",
       "  sl  local_address                         remote_address"
       "                        st tx_queue rx_queue tr tm->when retrnsmt   "
       "uid  timeout inode\n"
       "   0: 00000000000000000000000001000000:1F90 "
       "00000000000000000000000000000000:0000 0A 00000000:00000000 "
       "00:00000000 00000000     0        0 5353 1 0000000000000000 100 0 0 "
       "10 0\n"}};
  EXPECT_EQ(DescribeSocket(4242, net), "unix /run/x.sock");
  EXPECT_EQ(DescribeSocket(4343, net), "unix (unnamed)");
  EXPECT_EQ(DescribeSocket(5151, net), "tcp 127.0.0.1:80 LISTEN");
  EXPECT_EQ(DescribeSocket(5252, net),
            "tcp 127.0.0.1:80 -> 10.0.0.2:5555 ESTABLISHED");
  EXPECT_EQ(DescribeSocket(5353, net), "tcp6 [::1]:8080 LISTEN");
  EXPECT_EQ(DescribeSocket(9999, net), "");
}

}  // namespace
}  // namespace procwarp::cli
