// SessionRegistry's TCP connections (docs/remote.md): registered pending at
// accept, bound to an identity on their first call under an admission
// check, and ended (pending or bound) when their socket hangs up; and the
// peer strings gRPC names them by.
#include "daemon/server/session_registry.h"

#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace procwarp {
namespace {

TEST(PeerAddressOfTest, CanonicalisesGrpcsTcpPeersAndNothingElse) {
  EXPECT_EQ(PeerAddressOf("ipv4:127.0.0.1:7443"), "127.0.0.1:7443");
  EXPECT_EQ(PeerAddressOf("ipv6:[::1]:7443"), "[::1]:7443");
  EXPECT_EQ(PeerAddressOf("ipv6:%5B::1%5D:7443"), "[::1]:7443");
  EXPECT_EQ(PeerAddressOf("ipv6:[0:0::0:1]:7443"), "[::1]:7443");
  EXPECT_EQ(PeerAddressOf("fd:12"), "");
  EXPECT_EQ(PeerAddressOf("unix:/run/x.sock"), "");
  EXPECT_EQ(PeerAddressOf("ipv4:localhost:7443"), "");
  EXPECT_EQ(PeerAddressOf("ipv4:127.0.0.1:70000"), "");
  EXPECT_EQ(PeerAddressOf("ipv4:127.0.0.1"), "");
  EXPECT_EQ(PeerAddressOf("ipv6:::1:7443"), "");
  EXPECT_EQ(PeerAddressOf("ipv6:[::1:7443"), "");
}

Identity Remote(uid_t uid) {
  Identity identity;
  identity.uid = uid;
  identity.gid = uid;
  identity.subject = "CN=test";
  identity.peer_address = "127.0.0.1:5000";
  return identity;
}

// A connected socketpair standing in for an accepted TCP connection: the
// registry only dups and polls it.
struct Connection {
  Connection() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    ours = UniqueFd(fds[0]);
    peer = UniqueFd(fds[1]);
  }
  UniqueFd ours;  // what gRPC would own
  UniqueFd peer;  // the client
};

// How a connection's end was reported.
struct Ended {
  absl::Notification done;
  bool bound = false;
  std::function<void(bool)> Callback() {
    return [this](bool was_bound) {
      bound = was_bound;
      done.Notify();
    };
  }
};

const SessionRegistry::Admission kAdmitAll = [](int, int) {
  return absl::OkStatus();
};

TEST(SessionRegistryTest, PendingConnectionHasNoSessionUntilBound) {
  Ended ended;
  SessionRegistry registry;
  Connection c;
  ASSERT_TRUE(registry.RegisterPending(c.ours.get(), "127.0.0.1:5000",
                                       ended.Callback()).ok());
  EXPECT_EQ(registry.LiveSessions(), 1);
  auto pending = registry.RemoteSession("127.0.0.1:5000");
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ(*pending, nullptr);
  // Nothing at another address, not even the "fd:N" of its socket.
  EXPECT_TRUE(absl::IsUnauthenticated(
      registry.RemoteSession("127.0.0.1:5001").status()));
  EXPECT_FALSE(registry.Resolve(absl::StrCat("fd:", c.ours.get())).ok());

  int admitted_with_open = -1;
  auto bound = registry.Bind("127.0.0.1:5000", Remote(1000), "", "PEM",
                             [&](int open, int fd) {
                               admitted_with_open = open;
                               EXPECT_EQ(fd, c.ours.get());
                               return absl::OkStatus();
                             });
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_EQ(admitted_with_open, 0);
  EXPECT_EQ((*bound)->identity.uid, 1000u);
  EXPECT_EQ((*bound)->certificate, "PEM");
  EXPECT_EQ(registry.SessionsOf(Remote(1000)), 1);
  EXPECT_EQ(*registry.RemoteSession("127.0.0.1:5000"), *bound);
  // A second first call (they race) gets the same session, unadmitted.
  auto again = registry.Bind("127.0.0.1:5000", Remote(2000), "", "OTHER",
                             [](int, int) {
                               ADD_FAILURE() << "admitted twice";
                               return absl::OkStatus();
                             });
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *bound);

  c.peer.Reset();  // the client hangs up
  ended.done.WaitForNotification();
  EXPECT_TRUE(ended.bound);
  EXPECT_EQ(registry.SessionsOf(Remote(1000)), 0);
  EXPECT_TRUE(absl::IsUnauthenticated(
      registry.RemoteSession("127.0.0.1:5000").status()));
}

TEST(SessionRegistryTest, BoundConnectionEndRunsTheEndListeners) {
  absl::Notification listened;
  uint64_t ended_id = 0;
  Ended ended;
  SessionRegistry registry;
  registry.AddEndListener([&](const Session& session) {
    ended_id = session.id;
    listened.Notify();
  });
  Connection c;
  ASSERT_TRUE(registry.RegisterPending(c.ours.get(), "[::1]:6000",
                                       ended.Callback()).ok());
  auto bound = registry.Bind("[::1]:6000", Remote(1000), "", "PEM", kAdmitAll);
  ASSERT_TRUE(bound.ok());
  c.peer.Reset();
  listened.WaitForNotification();
  ended.done.WaitForNotification();
  EXPECT_EQ(ended_id, (*bound)->id);
}

TEST(SessionRegistryTest, PendingConnectionThatEndsRunsNoEndListener) {
  Ended ended;
  SessionRegistry registry;
  registry.AddEndListener(
      [](const Session&) { ADD_FAILURE() << "a pending connection has no session"; });
  Connection c;
  ASSERT_TRUE(registry.RegisterPending(c.ours.get(), "127.0.0.1:5000",
                                       ended.Callback()).ok());
  c.peer.Reset();
  ended.done.WaitForNotification();
  EXPECT_FALSE(ended.bound);
  EXPECT_EQ(registry.LiveSessions(), 0);
  // Its address is free again.
  Connection next;
  EXPECT_TRUE(registry.RegisterPending(next.ours.get(), "127.0.0.1:5000",
                                       nullptr).ok());
}

TEST(SessionRegistryTest, RefusedAdmissionClosesTheConnection) {
  Ended ended;
  SessionRegistry registry;
  Connection c;
  ASSERT_TRUE(registry.RegisterPending(c.ours.get(), "127.0.0.1:5000",
                                       ended.Callback()).ok());
  auto refused = registry.Bind(
      "127.0.0.1:5000", Remote(1000), "", "PEM",
      [](int, int) { return absl::ResourceExhaustedError("over the limit"); });
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  // The client sees the connection closed, and it ends unbound.
  char byte;
  EXPECT_EQ(read(c.peer.get(), &byte, 1), 0);
  ended.done.WaitForNotification();
  EXPECT_FALSE(ended.bound);
  EXPECT_EQ(registry.SessionsOf(Remote(1000)), 0);
}

TEST(SessionRegistryTest, PendingConnectionIsClosedAtItsBindDeadline) {
  Ended late;
  Ended bound;
  SessionRegistry registry;
  Connection never_calls;
  Connection calls;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(200);
  ASSERT_TRUE(registry.RegisterPending(never_calls.ours.get(), "127.0.0.1:1",
                                       late.Callback(), deadline).ok());
  ASSERT_TRUE(registry.RegisterPending(calls.ours.get(), "127.0.0.1:2",
                                       bound.Callback(), deadline).ok());
  ASSERT_TRUE(registry.Bind("127.0.0.1:2", Remote(1000), "", "PEM", kAdmitAll).ok());
  // The silent one is closed (its client reads EOF) and ends unbound...
  char byte;
  EXPECT_EQ(read(never_calls.peer.get(), &byte, 1), 0);
  late.done.WaitForNotification();
  EXPECT_FALSE(late.bound);
  EXPECT_GE(absl::Now(), deadline);
  // ...the bound one stays.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(bound.done.HasBeenNotified());
  EXPECT_EQ(registry.LiveSessions(), 1);
}

TEST(SessionRegistryTest, SecondLiveConnectionFromOneAddressIsRefused) {
  SessionRegistry registry;
  Connection first;
  Connection second;
  ASSERT_TRUE(registry.RegisterPending(first.ours.get(), "127.0.0.1:5000",
                                       nullptr).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(registry.RegisterPending(
      second.ours.get(), "127.0.0.1:5000", nullptr)));
  EXPECT_EQ(registry.LiveSessions(), 1);
}

TEST(SessionRegistryTest, BindCountsTheOwnersOpenConnections) {
  SessionRegistry registry;
  Connection a;
  Connection b;
  ASSERT_TRUE(registry.RegisterPending(a.ours.get(), "127.0.0.1:1", nullptr).ok());
  ASSERT_TRUE(registry.RegisterPending(b.ours.get(), "127.0.0.1:2", nullptr).ok());
  ASSERT_TRUE(registry.Bind("127.0.0.1:1", Remote(1000), "", "PEM", kAdmitAll).ok());
  int open = -1;
  ASSERT_TRUE(registry
                  .Bind("127.0.0.1:2", Remote(1000), "", "PEM",
                        [&](int n, int) {
                          open = n;
                          return absl::OkStatus();
                        })
                  .ok());
  EXPECT_EQ(open, 1);
  EXPECT_EQ(registry.SessionsOf(Remote(1000)), 2);
}

}  // namespace
}  // namespace procwarp
