// Unit tests for the daemon's small utilities.
#include <fcntl.h>

#include <cerrno>
#include <set>

#include "daemon/util/errno_status.h"
#include "daemon/util/handle_id.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"
#include "gtest/gtest.h"

namespace procwarp {
namespace {

TEST(UniqueFdTest, ClosesOnDestructionAndMove) {
  int raw = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd a(raw);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), raw);
  }
  EXPECT_EQ(fcntl(raw, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(UniqueFdTest, ReleaseKeepsFdOpen) {
  int raw = open("/dev/null", O_RDONLY | O_CLOEXEC);
  { UniqueFd a(raw); EXPECT_EQ(a.Release(), raw); }
  EXPECT_NE(fcntl(raw, F_GETFD), -1);
  close(raw);
}

TEST(ErrnoStatusTest, NamesCallAndMapsCode) {
  absl::Status s = ErrnoStatus(ENOENT, "execve(path=/nope)");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "execve(path=/nope): No such file or directory");
  EXPECT_EQ(ErrnoToCode(EACCES), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoToCode(ENOEXEC), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrnoName(EBADF), "EBADF");
}

TEST(HandleIdTest, UniqueAndWellFormed) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewHandleId();
    EXPECT_TRUE(IsWellFormedHandleId(id)) << id;
    EXPECT_TRUE(seen.insert(id).second);
  }
  EXPECT_FALSE(IsWellFormedHandleId("../etc"));
  EXPECT_FALSE(IsWellFormedHandleId(""));
}

absl::StatusOr<int> Half(int x) {
  if (x % 2) return absl::InvalidArgumentError("odd");
  return x / 2;
}
absl::Status Quarter(int x, int* out) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(*out, Half(h));
  RETURN_IF_ERROR(absl::OkStatus());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, Propagate) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  EXPECT_EQ(Quarter(6, &out).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace procwarp
