// Unit tests for the pieces of PyPy's "new thread" safe point (pypy.h)
// that need no live target: the stub's data page, where a stopped thread
// may start a thread from, and the bootstrap's clean-up.
#include "daemon/python/pypy.h"

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace procwarp::python::pypy {
namespace {

using ::testing::HasSubstr;

uint64_t At(const std::string& page, uint64_t offset) {
  uint64_t v = 0;
  std::memcpy(&v, page.data() + offset, sizeof(v));
  return v;
}

TEST(PyPySpawn, DataPagePointsAtItsOwnParts) {
  const uint64_t base = 0x7f0000000000;
  const uint64_t data = base + 4096;
  const std::string page = SpawnDataPage(base, 0x1111, 0x2222, "print(1)");
  EXPECT_EQ(At(page, SpawnData::kAttach), 0x1111u);
  EXPECT_EQ(At(page, SpawnData::kInit), 0x2222u);
  EXPECT_EQ(At(page, SpawnData::kInitStruct), data + SpawnData::kName);
  EXPECT_EQ(At(page, SpawnData::kInitStruct + 8), base + kInitFunctionOffset);
  EXPECT_EQ(At(page, SpawnData::kInitStruct + 16), data + SpawnData::kSource);
  EXPECT_EQ(At(page, SpawnData::kDone), 0u);
  EXPECT_STREQ(page.data() + SpawnData::kName, "_procwarp_exec");
  EXPECT_STREQ(page.data() + SpawnData::kSource, "print(1)");
  EXPECT_GE(SpawnMappingSize(8), 4096 + page.size());
}

TEST(PyPySpawn, CodeFitsItsPageAndHoldsTheTypeContextAddress) {
  const uint64_t base = 0x7f0000000000;
  const std::string code = SpawnCode(base);
  ASSERT_LT(code.size(), 4096u);
  ASSERT_GT(code.size(), kInitFunctionOffset + 10);
  EXPECT_EQ(static_cast<uint8_t>(code[0]), 0x53);       // push rbx
  EXPECT_EQ(static_cast<uint8_t>(code.back()), 0xc3);   // ret
  EXPECT_EQ(At(code, kInitFunctionOffset + 9), base + 4096 + SpawnData::kTypeContext);
}

TEST(PyPySpawn, OnlyFromTheInterpreterOrAnonymousCodeOutsideSystemCalls) {
  std::vector<ptrace::Mapping> maps(4);
  maps[0] = {.start = 0x1000, .end = 0x2000, .read = true, .exec = true,
             .path = "/usr/lib/x86_64-linux-gnu/libpypy3.9-c.so"};
  maps[1] = {.start = 0x3000, .end = 0x4000, .read = true, .exec = true, .path = ""};
  maps[2] = {.start = 0x5000, .end = 0x6000, .read = true, .exec = true,
             .path = "/usr/lib/x86_64-linux-gnu/libc.so.6"};
  maps[3] = {.start = 0x7000, .end = 0x8000, .read = true, .write = true, .path = ""};
  const std::string pypy = maps[0].path;
  user_regs_struct regs{};
  regs.orig_rax = static_cast<unsigned long long>(-1);
  regs.rip = 0x1800;
  EXPECT_TRUE(SafeToSpawnFrom(regs, maps, pypy));   // libpypy's text
  regs.rip = 0x3800;
  EXPECT_TRUE(SafeToSpawnFrom(regs, maps, pypy));   // the JIT's code
  regs.rip = 0x5800;
  EXPECT_FALSE(SafeToSpawnFrom(regs, maps, pypy));  // libc: may hold a lock
  regs.rip = 0x7800;
  EXPECT_FALSE(SafeToSpawnFrom(regs, maps, pypy));  // not code
  regs.rip = 0x9000;
  EXPECT_FALSE(SafeToSpawnFrom(regs, maps, pypy));  // unmapped
  regs.rip = 0x1800;
  regs.orig_rax = 202;                              // in futex()
  EXPECT_FALSE(SafeToSpawnFrom(regs, maps, pypy));
}

TEST(PyPySpawn, BootstrapCleanupTakesTheModuleOutAgain) {
  const std::string cleanup = SpawnBootstrapCleanup();
  EXPECT_THAT(cleanup, HasSubstr("modules.pop('_procwarp_exec', None)"));
  EXPECT_THAT(cleanup, HasSubstr("modules.pop('_procwarp_exec.lib', None)"));
  EXPECT_THAT(cleanup, HasSubstr("except BaseException:"));
}

}  // namespace
}  // namespace procwarp::python::pypy
