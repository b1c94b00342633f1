// The pieces of remote exec that need no target: the record parser against
// hostile input, the bytes literal, the trampoline's restart arithmetic and
// encoding, the PyPy TLS sequence match, and the opt-out read from a real
// child's /proc entries.
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "daemon/python/bootstrap.h"
#include "daemon/python/interpreter.h"
#include "daemon/python/pypy.h"
#include "daemon/python/trampoline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace procwarp::python {
namespace {

std::string Field(const std::string& bytes) {
  std::string out(4, '\0');
  out[0] = static_cast<char>(bytes.size() >> 24);
  out[1] = static_cast<char>(bytes.size() >> 16);
  out[2] = static_cast<char>(bytes.size() >> 8);
  out[3] = static_cast<char>(bytes.size());
  return out + bytes;
}

TEST(RecordTest, ParsesAWholeRecord) {
  std::string data = std::string("SR") + '\1' + Field("out") + Field("err") + Field("") +
                     Field("KeyError") + Field("'x'") + Field("Traceback...");
  auto r = ParseRecord(data);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, RecordStatus::kRaised);
  EXPECT_EQ(r->stdout_text, "out");
  EXPECT_EQ(r->exception_type, "KeyError");
  EXPECT_EQ(r->traceback, "Traceback...");
}

TEST(RecordTest, HostileRecordsAreDataLossNeverOverreads) {
  const std::string good = std::string("SR") + '\0' + Field("a") + Field("b") + Field("c") +
                           Field("d") + Field("e") + Field("f");
  for (size_t cut = 0; cut < good.size(); ++cut) {
    EXPECT_FALSE(ParseRecord(good.substr(0, cut)).ok()) << cut;
  }
  std::string huge = std::string("SR") + '\0' + "\xff\xff\xff\xff" + "abc";
  EXPECT_EQ(ParseRecord(huge).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseRecord(std::string("SR") + '\x09').status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseRecord("X")->status, RecordStatus::kRefused);
  EXPECT_TRUE(RecordStarted("S"));
  EXPECT_TRUE(RecordWithdrawn("W"));
}

TEST(BootstrapTest, BytesLiteralIsAsciiAndEscapesEverythingElse) {
  EXPECT_EQ(PythonBytesLiteral("a'b\\c\n\x01\xff"), "b'a\\x27b\\x5cc\\x0a\\x01\\xff'");
  const std::string source = BuildBootstrap("print('\xc3\xa9')\0x", false, 5, 6, 100);
  EXPECT_EQ(source.find('\0'), std::string::npos);
  for (unsigned char c : source) EXPECT_LT(c, 0x80);
  EXPECT_THAT(source, ::testing::HasSubstr("(5, 6, b'print("));
}

user_regs_struct InSyscall(long nr, long rax) {
  user_regs_struct r{};
  r.orig_rax = static_cast<unsigned long long>(nr);
  r.rax = static_cast<unsigned long long>(rax);
  r.rip = 0x401002;
  r.rsp = 0x7ffd0000;
  r.rdi = 11;
  r.r12 = 12;
  return r;
}

uint64_t Word(const std::string& header, uint64_t offset) {
  uint64_t v = 0;
  memcpy(&v, header.data() + offset, 8);
  return v;
}

TEST(TrampolineTest, RestartsTheInterruptedCallAsTheKernelWould) {
  auto sys = TrampolineHeader(1, 2, 3, InSyscall(SYS_read, -512));  // ERESTARTSYS
  ASSERT_TRUE(sys.ok());
  EXPECT_EQ(Word(*sys, TrampolineData::kRip), 0x401000u);
  EXPECT_EQ(Word(*sys, TrampolineData::kRegs + 0), static_cast<uint64_t>(SYS_read));  // rax
  EXPECT_EQ(Word(*sys, TrampolineData::kRegs + 8 * 7), 11u);                          // rdi
  EXPECT_EQ(Word(*sys, TrampolineData::kRegs + 8 * 12), 12u);                         // r12
  auto block = TrampolineHeader(1, 2, 3, InSyscall(SYS_nanosleep, -516));
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(Word(*block, TrampolineData::kRegs), static_cast<uint64_t>(SYS_restart_syscall));
  // Returned already (-EINTR) or not in a call: no trampoline.
  EXPECT_FALSE(TrampolineHeader(1, 2, 3, InSyscall(SYS_read, -4)).ok());
  EXPECT_FALSE(TrampolineHeader(1, 2, 3, InSyscall(-1, -512)).ok());
}

TEST(TrampolineTest, EntryIsAlignedBelowTheRedZoneAndFitsItsPage) {
  TrampolineLayout layout = LayoutTrampoline(0x10000, 5000, 2696);
  EXPECT_EQ(layout.data, 0x11000u);
  EXPECT_EQ(layout.source % 64, 0u);
  EXPECT_GE(layout.base + layout.size, layout.source + 5001);
  EXPECT_EQ(layout.size % kPage, 0u);
  user_regs_struct entry = TrampolineEntry(layout, InSyscall(SYS_read, -512));
  EXPECT_EQ(entry.rsp % 16, 0u);
  EXPECT_LE(entry.rsp, 0x7ffd0000u - 128);
  EXPECT_EQ(entry.rip, layout.base);
  EXPECT_EQ(entry.r12, layout.data);
  EXPECT_EQ(static_cast<long>(entry.orig_rax), -1);
  const std::string code = TrampolineCode(layout);
  EXPECT_LT(code.size(), kPage);
  EXPECT_EQ(code.substr(code.size() - 2), "\x0f\x0b");  // ud2 after the jump back
}

// A child running `argv` (sleep, or python3 sleeping) with `env`; its
// opt-out as read from /proc.
OptOut OptOutOf(std::vector<std::string> argv, std::vector<std::string> env) {
  const std::string program = argv[0] == "sleep" ? "/bin/sleep" : "/usr/bin/python3";
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> a, e;
    for (auto& s : argv) a.push_back(s.data());
    a.push_back(nullptr);
    for (auto& s : env) e.push_back(s.data());
    e.push_back(nullptr);
    execve(program.c_str(), a.data(), e.data());
    _exit(127);
  }
  usleep(300000);  // long enough for execve to have happened
  OptOut out = ReadOptOut(pid);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return out;
}

TEST(OptOutTest, EnvironmentAndXOptionsOptOut) {
  EXPECT_FALSE(OptOutOf({"sleep", "5"}, {"A=1"}).opted_out);
  EXPECT_FALSE(OptOutOf({"sleep", "5"}, {"PYTHON_DISABLE_REMOTE_DEBUG="}).opted_out);
  OptOut env = OptOutOf({"sleep", "5"}, {"PYTHON_DISABLE_REMOTE_DEBUG=1"});
  EXPECT_TRUE(env.opted_out);
  EXPECT_THAT(env.evidence, ::testing::HasSubstr("PYTHON_DISABLE_REMOTE_DEBUG=1"));
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const std::string nap = "import time; time.sleep(5)";
  EXPECT_TRUE(OptOutOf({"python3", "-X", "disable_remote_debug", "-c", nap}, {}).opted_out);
  EXPECT_TRUE(OptOutOf({"python3", "-W", "ignore", "-Xdisable-remote-debug", "-c", nap}, {})
                  .opted_out);
  // After the script or -c, options are the program's, not the interpreter's.
  EXPECT_FALSE(OptOutOf({"python3", "-c", nap, "-X", "disable_remote_debug"}, {}).opted_out);
}

// PyPy 7.3.11's PyPyGILState_Check starts (objdump of libpypy3.9-c.so):
//   17e8c40: 48 83 ec 08             sub $0x8,%rsp
//   17e8c44: 66 48 8d 3d 64 b3 ea 00 data16 lea 0xeab364(%rip),%rdi  # 2693fb0
//   17e8c4c: 66 66 48 e8 ec 33 87 ff data16 data16 rex.W call __tls_get_addr
TEST(PyPyTest, FindsTheTlsIndexOfTheGeneralDynamicSequence) {
  const uint8_t code[] = {0x48, 0x83, 0xec, 0x08, 0x66, 0x48, 0x8d, 0x3d, 0x64, 0xb3, 0xea,
                          0x00, 0x66, 0x66, 0x48, 0xe8, 0xec, 0x33, 0x87, 0xff, 0xc3};
  EXPECT_EQ(pypy::TlsIndexAddress(0x17e8c40, code), uint64_t{0x2693fb0});
  // A plain lea (no __tls_get_addr call after it) is not the sequence.
  const uint8_t plain[] = {0x48, 0x8d, 0x3d, 0x64, 0xb3, 0xea, 0x00, 0xe8, 0, 0, 0, 0,
                           0x90, 0x90, 0x90, 0x90, 0x90};
  EXPECT_FALSE(pypy::TlsIndexAddress(0x1000, plain).has_value());
  EXPECT_FALSE(pypy::TlsIndexAddress(0x1000, {}).has_value());
}

}  // namespace
}  // namespace procwarp::python
