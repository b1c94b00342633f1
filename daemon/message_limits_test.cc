// The daemon's default message limits (max_receive_message_bytes,
// max_send_message_bytes) measured against the largest messages the API
// allows: each is built here at its largest and serialized, so a change to
// a bound (or to the limits) that would make a legitimate message fail shows
// up here instead of as "message larger than max" in a client.
#include <cstdint>
#include <string>

#include "daemon/config.h"
#include "daemon/server/record_bounds.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/memory.pb.h"
#include "proto/procwarp/v1/processes.pb.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp {
namespace {

// Bounds other parts of the daemon enforce (kept in step by hand: they are
// private to their files). Threads.Execute: syscalls per message
// (threads_service.cc kMaxBatch); Memory.Read: bytes per unary read
// (memory_service.cc kMaxUnaryBytes) and per ReadStream chunk.
constexpr int kMaxBatch = 65536;
constexpr size_t kMaxUnaryRead = (4 << 20) - (64 << 10);
constexpr size_t kStreamChunk = 1 << 20;
// The longest errno name the daemon reports.
constexpr char kLongestErrnoName[] = "EPROTONOSUPPORT";

class MessageLimitsTest : public ::testing::Test {
 protected:
  size_t receive_ = DefaultConfig().limits().max_receive_message_bytes();
  size_t send_ = DefaultConfig().limits().max_send_message_bytes();
};

// Labels of exactly kMaxLabelBytes.
google::protobuf::Map<std::string, std::string> LargestLabels() {
  google::protobuf::Map<std::string, std::string> labels;
  labels["k"] = std::string(kMaxLabelBytes - 1, 'v');
  EXPECT_TRUE(CheckLabelBytes(labels, "test").ok());
  return labels;
}

// argv as large as kMaxRecordArgvBytes allows, in its largest encoding: one
// string takes fewer bytes of execve's counting (NUL, pointer) than many.
google::protobuf::RepeatedPtrField<std::string> LargestArgv() {
  google::protobuf::RepeatedPtrField<std::string> argv;
  *argv.Add() = std::string(kMaxRecordArgvBytes - 1 - sizeof(char*), 'a');
  EXPECT_TRUE(CheckArgvBytes(argv, "test").ok());
  return argv;
}

TEST_F(MessageLimitsTest, ExecuteBatchFitsBothWays) {
  procwarp::v1::ExecuteRequest request;
  request.set_thread_id(std::string(32, 'f'));
  procwarp::v1::ExecuteResponse response;
  for (int i = 0; i < kMaxBatch; ++i) {
    procwarp::v1::Syscall* call = request.add_syscalls();
    call->set_number(INT64_MIN);
    for (int a = 0; a < 6; ++a) call->add_args(INT64_MIN);
    procwarp::v1::SyscallResult* result = response.add_results();
    result->set_value(-1);
    result->set_error(INT32_MAX);
    result->set_error_name(kLongestErrnoName);
  }
  printf("largest Execute request %zu bytes, response %zu bytes\n",
         request.ByteSizeLong(), response.ByteSizeLong());
  EXPECT_LE(request.ByteSizeLong(), receive_);
  EXPECT_LE(response.ByteSizeLong(), send_);
}

TEST_F(MessageLimitsTest, MemoryReadsFit) {
  procwarp::v1::ReadMemoryResponse read;
  read.set_data(std::string(kMaxUnaryRead, 'x'));
  procwarp::v1::ReadMemoryChunk chunk;
  chunk.set_offset(UINT64_MAX);
  chunk.set_data(std::string(kStreamChunk, 'x'));
  printf("largest Read response %zu bytes, ReadStream chunk %zu bytes\n",
         read.ByteSizeLong(), chunk.ByteSizeLong());
  EXPECT_LE(read.ByteSizeLong(), send_);
  EXPECT_LE(chunk.ByteSizeLong(), send_);
  // A client may write what it may read in one call.
  procwarp::v1::WriteMemoryRequest write;
  write.set_pointer_id(std::string(32, 'f'));
  write.set_offset(UINT64_MAX);
  write.set_data(std::string(kMaxUnaryRead, 'x'));
  EXPECT_LE(write.ByteSizeLong(), receive_);
}

// A Spawn at its largest (argv and env at ARG_MAX together, the most
// labels) is accepted; the record it leaves, sent in Get, a List page and
// every Events subscriber's stream, fits one message. (An Events queue
// takes one event of any size when empty.)
TEST_F(MessageLimitsTest, LargestSpawnAndItsRecordFit) {
  procwarp::v1::SpawnRequest spawn;
  *spawn.mutable_argv() = LargestArgv();
  *spawn.mutable_labels() = LargestLabels();
  EXPECT_LE(spawn.ByteSizeLong(), receive_);

  procwarp::v1::ProcessEvent event;
  procwarp::v1::ProcessInfo* info = event.mutable_process();
  info->set_id(std::string(32, 'f'));
  *info->mutable_argv() = spawn.argv();
  *info->mutable_labels() = spawn.labels();
  info->mutable_owner()->set_subject(std::string(256, 's'));
  printf("largest process record %zu bytes\n", info->ByteSizeLong());
  procwarp::v1::ListProcessesResponse page;
  *page.add_processes() = *info;
  page.set_next_page_token(info->id());
  EXPECT_LE(page.ByteSizeLong(), send_);
  EXPECT_LE(event.ByteSizeLong(), send_);
}

}  // namespace
}  // namespace procwarp
