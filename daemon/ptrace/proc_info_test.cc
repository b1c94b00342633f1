// Unit tests for the /proc parsing the attach backend relies on.
#include "daemon/ptrace/proc_info.h"

#include <unistd.h>

#include "gtest/gtest.h"

namespace procwarp::ptrace {
namespace {

TEST(ProcInfoTest, ParsesMapsLines) {
  absl::StatusOr<std::vector<Mapping>> maps = ParseMaps(
      "55d3a5d62000-55d3a5d63000 r-xp 00001000 fd:01 1234   /tmp/a b/prog (deleted)\n"
      "7ffd1000-7ffd3000 r-xp 00000000 00:00 0                  [vdso]\n"
      "7f0000000000-7f0000001000 rw-s 00000000 00:05 99\n");
  ASSERT_TRUE(maps.ok()) << maps.status();
  ASSERT_EQ(maps->size(), 3u);
  const Mapping& prog = (*maps)[0];
  EXPECT_EQ(prog.start, 0x55d3a5d62000u);
  EXPECT_EQ(prog.end, 0x55d3a5d63000u);
  EXPECT_TRUE(prog.read && prog.exec && !prog.write && !prog.shared);
  EXPECT_EQ(prog.offset, 0x1000u);
  EXPECT_EQ(prog.dev, "fd:01");
  EXPECT_EQ(prog.inode, 1234u);
  EXPECT_EQ(prog.path, "/tmp/a b/prog (deleted)");
  EXPECT_EQ((*maps)[1].path, "[vdso]");
  EXPECT_TRUE((*maps)[2].shared);
  EXPECT_EQ((*maps)[2].path, "");
  EXPECT_FALSE(ParseMaps("not a maps line\n").ok());
}

TEST(ProcInfoTest, ReadsOwnStatusAndThreads) {
  absl::StatusOr<ProcStatus> st = ReadStatus(getpid());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->tgid, getpid());
  EXPECT_EQ(st->tracer_pid, 0);
  absl::StatusOr<std::vector<pid_t>> tids = ListThreads(getpid());
  ASSERT_TRUE(tids.ok());
  EXPECT_FALSE(tids->empty());
  EXPECT_TRUE(IsThreadOf(getpid(), getpid()));
  EXPECT_FALSE(ReadStatus(-5).ok());
}

}  // namespace
}  // namespace procwarp::ptrace
