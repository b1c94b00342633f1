// The in-band memory path, end to end: procwarpd runs confined by a seccomp
// filter that fails process_vm_readv/writev with EPERM (as a container's
// default profile would), and so do the agents it starts. Memory must still
// work, through the agents' READ_MEM/WRITE_MEM over their sockets; the direct
// local path says FAILED_PRECONDITION, and the C++ client falls back to
// streaming by itself.
#include <sys/mman.h>
#include <sys/syscall.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "client/cc/client.h"
#include "client/cc/thread.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937_64 random(seed);
  std::string data(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t word = random();
    memcpy(&data[i], &word, std::min<size_t>(8, n - i));
  }
  return data;
}

class MemoryFallbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
    options.wrapper = {RunfilePath("tests/testcases/deny_process_vm")};
    auto d = DaemonHarness::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    auto client = Client::Connect(daemon_->socket_path());
    ASSERT_TRUE(client.ok()) << client.status();
    client_.emplace(*std::move(client));
    auto thread = client_->CreateThread();
    ASSERT_TRUE(thread.ok()) << thread.status();
    thread_.emplace(*std::move(thread));
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::optional<Client> client_;
  std::optional<Thread> thread_;
};

TEST_F(MemoryFallbackTest, DaemonAndAgentsAreConfined) {
  for (pid_t pid : {daemon_->pid(), thread_->pid()}) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::stringstream text;
    text << status.rdbuf();
    EXPECT_THAT(text.str(), HasSubstr("Seccomp:\t2")) << "pid " << pid;
  }
}

TEST_F(MemoryFallbackTest, SmallReadAndWriteGoInBand) {
  auto buffer = thread_->Allocate(4096);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  ASSERT_TRUE(buffer->Write("in-band hello", 100).ok());
  auto back = buffer->Read(100, 13);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, "in-band hello");
}

TEST_F(MemoryFallbackTest, EightMegabytesRoundTripThroughTheStreamedPath) {
  constexpr size_t kSize = 8 << 20;
  auto buffer = thread_->Allocate(kSize);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  std::string data = RandomBytes(kSize, 7);
  // Direct is refused (the agent may not process_vm_* us), so the client
  // streams; the daemon may not process_vm_* the agent, so the agent copies.
  ASSERT_TRUE(buffer->Write(data).ok());
  auto back = buffer->Read();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data) << "read back differs";
}

TEST_F(MemoryFallbackTest, DirectPathIsRefusedWithAReason) {
  auto buffer = thread_->Allocate(1 << 20);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  std::string local(1 << 20, '\0');
  v1::DirectMemoryRequest request;
  request.set_pointer_id(buffer->id());
  request.set_length(local.size());
  request.set_client_address(reinterpret_cast<uint64_t>(local.data()));
  v1::DirectMemoryResponse response;
  auto memory = v1::Memory::NewStub(daemon_->NewChannel());
  grpc::Status s = memory->ReadToClient(Ctx().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("EPERM"));
  EXPECT_THAT(s.error_message(), HasSubstr("Read/ReadStream"));
}

TEST_F(MemoryFallbackTest, UnmappedRangeIsAnErrorNotACrash) {
  // Map three pages, unmap the middle one behind the daemon's back: reading
  // across the hole must fail cleanly in the agent's fault-safe copy.
  constexpr size_t kPage = 4096;
  auto buffer = thread_->Allocate(3 * kPage);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  auto unmapped = thread_->Syscall(SYS_munmap, buffer->address() + kPage, kPage);
  ASSERT_TRUE(unmapped.ok() && unmapped->ok());
  auto read = buffer->Read(0, 3 * kPage);
  EXPECT_TRUE(absl::IsFailedPrecondition(read.status())) << read.status();
  EXPECT_TRUE(absl::IsFailedPrecondition(
      buffer->Write(std::string(3 * kPage, 'x'))));
  // The pages around the hole still work, and so does the thread.
  ASSERT_TRUE(buffer->Write("edge", 2 * kPage).ok());
  EXPECT_EQ(*buffer->Read(2 * kPage, 4), "edge");
  auto pid = thread_->GetPid();
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(*pid, thread_->pid());
}

}  // namespace
}  // namespace procwarp::testing
