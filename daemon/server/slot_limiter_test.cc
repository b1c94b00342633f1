// Unit tests for SlotLimiter: per-identity limits, the admins' own limit, the
// total shared by non-admins, and slots coming back when released.
#include "daemon/server/slot_limiter.h"

#include <optional>
#include <vector>

#include "gtest/gtest.h"

namespace procwarp {
namespace {

Identity User(uid_t uid) {
  Identity id;
  id.uid = uid;
  id.gid = uid;
  return id;
}

Identity Root() {
  Identity id;
  id.admin = true;
  return id;
}

TEST(SlotLimiterTest, PerIdentityLimitAndRelease) {
  SlotLimiter limiter("calls", {.per_identity = 2, .per_admin = 5});
  std::vector<SlotLimiter::Slot> held;
  for (int i = 0; i < 2; ++i) {
    auto slot = limiter.Acquire(User(1000));
    ASSERT_TRUE(slot.ok()) << slot.status();
    held.push_back(*std::move(slot));
  }
  auto refused = limiter.Acquire(User(1000));
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status()));
  EXPECT_NE(refused.status().message().find("limit is 2"), std::string::npos)
      << refused.status();
  // Another user is not affected.
  EXPECT_TRUE(limiter.Acquire(User(1001)).ok());
  EXPECT_EQ(limiter.InUse(User(1000)), 2u);
  held.pop_back();
  EXPECT_EQ(limiter.InUse(User(1000)), 1u);
  EXPECT_TRUE(limiter.Acquire(User(1000)).ok());
  held.clear();
  EXPECT_EQ(limiter.InUse(User(1000)), 0u);
}

TEST(SlotLimiterTest, AdminsHaveTheirOwnLimit) {
  SlotLimiter limiter("calls", {.per_identity = 1, .per_admin = 3});
  std::vector<SlotLimiter::Slot> held;
  for (int i = 0; i < 3; ++i) {
    auto slot = limiter.Acquire(Root());
    ASSERT_TRUE(slot.ok()) << slot.status();
    held.push_back(*std::move(slot));
  }
  EXPECT_TRUE(absl::IsResourceExhausted(limiter.Acquire(Root()).status()));
}

TEST(SlotLimiterTest, NonAdminsShareATotalThatAdminsDoNotCountAgainst) {
  SlotLimiter limiter("calls",
                      {.per_identity = 2, .per_admin = 2, .non_admin_total = 3});
  std::vector<SlotLimiter::Slot> held;
  for (uid_t uid : {1000, 1000, 1001}) {
    auto slot = limiter.Acquire(User(uid));
    ASSERT_TRUE(slot.ok()) << slot.status();
    held.push_back(*std::move(slot));
  }
  auto refused = limiter.Acquire(User(1002));
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status()));
  EXPECT_NE(refused.status().message().find("all non-admin users"),
            std::string::npos)
      << refused.status();
  // Root is still served, and holds nothing of the non-admins' total.
  auto root = limiter.Acquire(Root());
  ASSERT_TRUE(root.ok());
  held.pop_back();
  EXPECT_TRUE(limiter.Acquire(User(1002)).ok());
}

TEST(SlotLimiterTest, AmountsCountAsManySlots) {
  SlotLimiter limiter("bytes", {.per_identity = 100, .non_admin_total = 150});
  auto big = limiter.Acquire(User(1), 60);
  ASSERT_TRUE(big.ok());
  auto refused = limiter.Acquire(User(1), 41);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status()));
  EXPECT_NE(refused.status().message().find("needs 41 more"), std::string::npos)
      << refused.status();
  auto fits = limiter.Acquire(User(1), 40);
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(limiter.InUse(User(1)), 100u);
  // The shared total counts amounts too.
  auto other = limiter.Acquire(User(2), 60);
  EXPECT_TRUE(absl::IsResourceExhausted(other.status()));
  { SlotLimiter::Slot released = *std::move(big); }
  EXPECT_EQ(limiter.InUse(User(1)), 40u);
  EXPECT_TRUE(limiter.Acquire(User(2), 60).ok());
}

TEST(SlotLimiterTest, MovedSlotReleasesOnce) {
  SlotLimiter limiter("calls", {.per_identity = 1});
  {
    auto slot = limiter.Acquire(User(1));
    ASSERT_TRUE(slot.ok());
    std::optional<SlotLimiter::Slot> moved;
    moved.emplace(*std::move(slot));
    EXPECT_EQ(limiter.InUse(User(1)), 1u);
  }
  EXPECT_EQ(limiter.InUse(User(1)), 0u);
  EXPECT_TRUE(limiter.Acquire(User(1)).ok());
}

}  // namespace
}  // namespace procwarp
