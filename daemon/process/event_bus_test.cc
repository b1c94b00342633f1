// Unit tests for EventBus: a subscriber's queue is bounded in events and in
// bytes; past a bound it is freed and the subscriber learns how many events
// it lost; an empty queue takes one event of any size; viewers see only what
// they may access.
#include "daemon/process/event_bus.h"

#include <string>

#include "gtest/gtest.h"

namespace procwarp {
namespace {

Identity User(uid_t uid) {
  Identity id;
  id.uid = uid;
  return id;
}

procwarp::v1::ProcessEvent EventWithLabel(size_t bytes) {
  procwarp::v1::ProcessEvent event;
  event.set_kind(procwarp::v1::ProcessEvent::KIND_STARTED);
  (*event.mutable_process()->mutable_labels())["l"] = std::string(bytes, 'x');
  return event;
}

TEST(EventBusTest, ByteBoundDropsTheSubscriberAndFreesItsQueue) {
  EventBus bus(/*max_queued=*/1000, /*max_queued_bytes=*/10000);
  auto sub = bus.Subscribe(User(1));
  for (int i = 0; i < 3; ++i) bus.Publish(EventWithLabel(3000), User(1));
  EXPECT_GT(sub->queued_bytes(), 9000u);
  // The fourth does not fit: the queue goes, and so does everything after.
  bus.Publish(EventWithLabel(3000), User(1));
  EXPECT_EQ(sub->queued_bytes(), 0u);
  bus.Publish(EventWithLabel(10), User(1));
  EXPECT_EQ(sub->dropped(), 5u);
  procwarp::v1::ProcessEvent event;
  bool overflowed = false;
  EXPECT_FALSE(sub->Next(&event, absl::ZeroDuration(), &overflowed));
  EXPECT_TRUE(overflowed);
  bus.Unsubscribe(sub);
}

TEST(EventBusTest, CountBoundStillHolds) {
  EventBus bus(/*max_queued=*/2, /*max_queued_bytes=*/1 << 20);
  auto sub = bus.Subscribe(User(1));
  for (int i = 0; i < 3; ++i) bus.Publish(EventWithLabel(1), User(1));
  EXPECT_EQ(sub->dropped(), 3u);
  bus.Unsubscribe(sub);
}

TEST(EventBusTest, EmptyQueueTakesOneLargeEvent) {
  EventBus bus(/*max_queued=*/1000, /*max_queued_bytes=*/100);
  auto sub = bus.Subscribe(User(1));
  bus.Publish(EventWithLabel(5000), User(1));
  procwarp::v1::ProcessEvent event;
  bool overflowed = false;
  ASSERT_TRUE(sub->Next(&event, absl::ZeroDuration(), &overflowed));
  EXPECT_EQ(event.process().labels().at("l").size(), 5000u);
  EXPECT_EQ(sub->queued_bytes(), 0u);
  // A reader that keeps up is never dropped.
  bus.Publish(EventWithLabel(5000), User(1));
  ASSERT_TRUE(sub->Next(&event, absl::ZeroDuration(), &overflowed));
  EXPECT_EQ(sub->dropped(), 0u);
  bus.Unsubscribe(sub);
}

TEST(EventBusTest, ViewersSeeOnlyWhatTheyMayAccess) {
  EventBus bus;
  auto other = bus.Subscribe(User(2));
  bus.Publish(EventWithLabel(1), User(1));
  procwarp::v1::ProcessEvent event;
  bool overflowed = false;
  EXPECT_FALSE(other->Next(&event, absl::ZeroDuration(), &overflowed));
  EXPECT_FALSE(overflowed);
  EXPECT_EQ(other->queued_bytes(), 0u);
  bus.Unsubscribe(other);
}

}  // namespace
}  // namespace procwarp
