// Unit tests for HandleTable: ids, NOT_FOUND for other owners (admins see
// all), the limit reserved before the work (including under concurrency),
// reservations given back, listing, and the session-end release with a real
// SessionRegistry and a real socket hang-up.
#include "daemon/handles/handle_table.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/notification.h"
#include "daemon/util/unique_fd.h"
#include "gtest/gtest.h"

namespace procwarp {
namespace {

struct Thing {
  explicit Thing(int v) : value(v) {}
  int value;
};
using Table = HandleTable<Thing>;

Identity User(uid_t uid) { return {.uid = uid, .gid = uid}; }
Identity Admin() { return {.uid = 0, .gid = 0, .admin = true}; }

HandleOwner Owned(const Identity& who, uint64_t session = 0,
                  bool persistent = true) {
  HandleOwner owner;
  owner.identity = who;
  owner.session_id = session;
  owner.persistent = persistent;
  return owner;
}

HandleTableOptions Options(size_t max_per_owner = 4) {
  HandleTableOptions options;
  options.noun = "thing";
  options.max_per_owner = max_per_owner;
  options.how_to_free = "remove some";
  return options;
}

// Reserves and commits a Thing(v) for `owner`; returns its id.
std::string Add(Table& table, const HandleOwner& owner, int v) {
  auto reservation = table.Reserve(owner);
  EXPECT_TRUE(reservation.ok()) << reservation.status();
  std::string id = reservation->id();
  auto committed = std::move(*reservation).Commit(std::make_shared<Thing>(v));
  EXPECT_TRUE(committed.ok()) << committed.status();
  return id;
}

TEST(HandleTableTest, IdsAreWellFormedAndFoundByTheirOwner) {
  Table table(Options());
  const std::string id = Add(table, Owned(User(1000)), 7);
  EXPECT_TRUE(IsWellFormedHandleId(id));
  auto found = table.Find(User(1000), id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ((*found)->value, 7);
  EXPECT_EQ(table.size(), 1u);
}

TEST(HandleTableTest, OthersGetNotFoundExactlyAsForUnknownIdsAdminsSeeAll) {
  Table table(Options());
  const std::string id = Add(table, Owned(User(1000)), 1);
  auto other = table.Find(User(1001), id);
  auto unknown = table.Find(User(1001), "0123456789abcdef0123456789abcdef");
  ASSERT_TRUE(absl::IsNotFound(other.status())) << other.status();
  ASSERT_TRUE(absl::IsNotFound(unknown.status()));
  // The same words, but for the id itself: nothing tells them apart.
  EXPECT_EQ(other.status().message(),
            absl::StrCat("no thing with id '", id, "'"));
  EXPECT_TRUE(absl::IsNotFound(table.Remove(User(1001), id).status()));
  EXPECT_TRUE(table.Find(Admin(), id).ok());
  EXPECT_EQ(table.size(), 1u);
}

TEST(HandleTableTest, ListForShowsOwnHandlesAndAllOnlyToAdmins) {
  Table table(Options());
  Add(table, Owned(User(1000)), 1);
  Add(table, Owned(User(1000)), 2);
  Add(table, Owned(User(1001)), 3);
  EXPECT_EQ(table.ListFor(User(1000)).size(), 2u);
  EXPECT_EQ(table.ListFor(User(1000), /*all=*/true).size(), 2u);
  EXPECT_EQ(table.ListFor(User(1001)).size(), 1u);
  EXPECT_EQ(table.ListFor(Admin()).size(), 0u);
  EXPECT_EQ(table.ListFor(Admin(), /*all=*/true).size(), 3u);
}

TEST(HandleTableTest, ReservationsCountUntilCommittedOrDropped) {
  Table table(Options(/*max_per_owner=*/2));
  const HandleOwner owner = Owned(User(1000));
  std::optional<Table::Reservation> first(*table.Reserve(owner));
  auto second = table.Reserve(owner);
  ASSERT_TRUE(second.ok());
  auto third = table.Reserve(owner);
  EXPECT_TRUE(absl::IsResourceExhausted(third.status())) << third.status();
  EXPECT_NE(third.status().message().find("limit is 2"), std::string::npos);
  // Another owner has its own limit.
  EXPECT_TRUE(table.Reserve(Owned(User(1001))).ok());
  // Dropped unused: the place comes back.
  first.reset();
  EXPECT_EQ(table.CountFor(User(1000)), 1u);
  auto again = table.Reserve(owner);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(std::move(*again).Commit(std::make_shared<Thing>(1)).ok());
  EXPECT_EQ(table.CountFor(User(1000)), 2u);
  EXPECT_EQ(table.size(), 1u);
}

TEST(HandleTableTest, RemoveFreesThePlace) {
  Table table(Options(/*max_per_owner=*/1));
  const std::string id = Add(table, Owned(User(1000)), 1);
  EXPECT_FALSE(table.Reserve(Owned(User(1000))).ok());
  auto removed = table.Remove(User(1000), id);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ((*removed)->value, 1);
  EXPECT_TRUE(absl::IsNotFound(table.Find(User(1000), id).status()));
  EXPECT_TRUE(table.Reserve(Owned(User(1000))).ok());
}

TEST(HandleTableTest, PendingLimitCountsWorkInFlightOnly) {
  HandleTableOptions options = Options(/*max_per_owner=*/10);
  options.max_pending_per_owner = 1;
  Table table(options);
  const HandleOwner owner = Owned(User(1000));
  auto first = table.Reserve(owner);
  ASSERT_TRUE(first.ok());
  auto second = table.Reserve(owner);
  EXPECT_TRUE(absl::IsResourceExhausted(second.status()));
  EXPECT_NE(second.status().message().find("still being made"),
            std::string::npos);
  ASSERT_TRUE(std::move(*first).Commit(std::make_shared<Thing>(1)).ok());
  EXPECT_TRUE(table.Reserve(owner).ok());
}

TEST(HandleTableTest, BeyondLimitKeepsItsIdAndCounts) {
  Table table(Options(/*max_per_owner=*/1));
  const std::string id = "0123456789abcdef0123456789abcdef";
  Table::Reservation r = table.ReserveBeyondLimit(Owned(User(1000)), id);
  Table::Reservation r2 = table.ReserveBeyondLimit(Owned(User(1000)));
  EXPECT_EQ(table.CountFor(User(1000)), 2u);
  ASSERT_TRUE(std::move(r).Commit(std::make_shared<Thing>(5)).ok());
  EXPECT_EQ((*table.Find(User(1000), id))->value, 5);
  EXPECT_FALSE(table.Reserve(Owned(User(1000))).ok());
}

TEST(HandleTableTest, QuotaKeyCountsPerSomethingElse) {
  Table table(Options(/*max_per_owner=*/1));
  HandleOwner a = Owned(User(1000));
  a.quota_key = "thread A";
  HandleOwner b = a;
  b.quota_key = "thread B";
  Add(table, a, 1);
  EXPECT_FALSE(table.Reserve(a).ok());
  Add(table, b, 2);
  // Found and listed by the owner, whatever the quota key.
  EXPECT_EQ(table.ListFor(User(1000)).size(), 2u);
}

TEST(HandleTableTest, RemoveWhereTakesWhatItSelects) {
  Table table(Options());
  Add(table, Owned(User(1000)), 1);
  Add(table, Owned(User(1000)), 2);
  Add(table, Owned(User(1000)), 3);
  auto removed = table.RemoveWhere([](const Thing& t) { return t.value != 2; });
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.CountFor(User(1000)), 1u);
  EXPECT_EQ(table.RemoveAll().size(), 1u);
  EXPECT_EQ(table.CountFor(User(1000)), 0u);
}

// Many threads reserve for one owner at once, hold their places for a
// while, and commit some: the owner never holds more than the limit, and
// exactly the limit is granted each round.
TEST(HandleTableTest, ConcurrentReservationsNeverOvershootTheLimit) {
  constexpr size_t kLimit = 5;
  constexpr int kThreads = 16;
  constexpr int kRounds = 50;
  Table table(Options(kLimit));
  const HandleOwner owner = Owned(User(1000));
  std::atomic<size_t> max_seen{0};
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<size_t> granted{0};
    absl::Barrier* start = new absl::Barrier(kThreads);
    absl::Barrier* reserved = new absl::Barrier(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        if (start->Block()) delete start;
        auto reservation = table.Reserve(owner);
        if (reservation.ok()) {
          ++granted;
          size_t now = table.CountFor(owner);
          size_t seen = max_seen.load();
          while (now > seen && !max_seen.compare_exchange_weak(seen, now)) {
          }
        }
        // Everybody has tried while the granted places are still held.
        if (reserved->Block()) delete reserved;
        if (reservation.ok() && i % 2 == 0) {
          auto committed =
              std::move(*reservation).Commit(std::make_shared<Thing>(i));
          ASSERT_TRUE(committed.ok());
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(granted.load(), kLimit);
    EXPECT_LE(table.CountFor(owner), kLimit);
    EXPECT_EQ(table.CountFor(owner), table.size());
    table.RemoveAll();
  }
  EXPECT_LE(max_seen.load(), kLimit);
  EXPECT_EQ(table.CountFor(owner), 0u);
}

// A session registered with a real registry over a socketpair; closing the
// peer end ends it.
struct TestSession {
  explicit TestSession(SessionRegistry& registry, const Identity& who) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    ours = UniqueFd(fds[0]);
    peer = UniqueFd(fds[1]);
    auto session = registry.Register(ours.get(), who);
    EXPECT_TRUE(session.ok()) << session.status();
    id = (*session)->id;
  }
  UniqueFd ours;
  UniqueFd peer;
  uint64_t id = 0;
};

// What the release function saw; declared before the registry and the
// table, so it outlives the session ends their teardown causes.
struct Released {
  absl::Mutex mu;
  std::vector<int> values ABSL_GUARDED_BY(mu);
  absl::Notification ended;  // the watched session has ended
  std::atomic<uint64_t> watched{0};

  Table::ReleaseFn Recorder() {
    return [this](Table::Ptr thing) {
      absl::MutexLock lock(&mu);
      values.push_back(thing->value);
    };
  }
  // Registered after the table's listener: listeners run in order.
  SessionRegistry::EndListener Watcher() {
    return [this](const Session& session) {
      if (session.id == watched) ended.Notify();
    };
  }
  std::vector<int> Values() {
    absl::MutexLock lock(&mu);
    return values;
  }
};

// A table that releases on session ends of a real registry, and what it
// released.
struct SessionFixture {
  SessionFixture() {
    table.ReleaseOnSessionEnd(&registry, released.Recorder());
    registry.AddEndListener(released.Watcher());
  }
  Released released;  // first: outlives the ends the others' teardown causes
  SessionRegistry registry;
  Table table{Options()};
};

TEST(HandleTableTest, SessionEndReleasesItsNonPersistentHandles) {
  SessionFixture f;
  Released& released = f.released;
  Table& table = f.table;
  TestSession session(f.registry, User(1000));
  TestSession other(f.registry, User(1000));
  released.watched = session.id;
  Add(table, Owned(User(1000), session.id, /*persistent=*/false), 1);
  const std::string kept =
      Add(table, Owned(User(1000), session.id, /*persistent=*/true), 2);
  const std::string others =
      Add(table, Owned(User(1000), other.id, /*persistent=*/false), 3);
  session.peer.Reset();  // hang up
  released.ended.WaitForNotification();
  EXPECT_EQ(released.Values(), std::vector<int>{1});
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.Find(User(1000), kept).ok());
  EXPECT_TRUE(table.Find(User(1000), others).ok());
  table.StopReleasingOnSessionEnd();
}

TEST(HandleTableTest, CommitAfterTheSessionEndedReleasesAndIsCancelled) {
  SessionFixture f;
  Released& released = f.released;
  Table& table = f.table;
  TestSession session(f.registry, User(1000));
  released.watched = session.id;
  auto reservation =
      table.Reserve(Owned(User(1000), session.id, /*persistent=*/false));
  ASSERT_TRUE(reservation.ok());
  session.peer.Reset();
  released.ended.WaitForNotification();
  auto committed = std::move(*reservation).Commit(std::make_shared<Thing>(9));
  EXPECT_TRUE(absl::IsCancelled(committed.status())) << committed.status();
  EXPECT_EQ(released.Values(), std::vector<int>{9});
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.CountFor(User(1000)), 0u);
}

}  // namespace
}  // namespace procwarp
