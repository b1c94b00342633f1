// Memory.ReadToClient / WriteFromClient, the direct local path, against a
// real procwarpd and real agent threads: data round trips through the
// client's own memory, bounds and bad addresses are refused cleanly, the
// address a client names is always in its own process (a uid-65534 client
// cannot make the daemon touch anyone else's memory), and an admin using
// another user's thread is told to use the streamed path instead.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using v1::Memory;
using v1::Threads;

constexpr int kNobody = 65534;

class MemoryDirectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonHarness::Start(DaemonHarness::Options::WithAgent());
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    auto channel = daemon_->NewChannel();
    threads_ = Threads::NewStub(channel);
    memory_ = Memory::NewStub(channel);
  }

  v1::ThreadInfo CreateThread() {
    v1::CreateThreadResponse response;
    grpc::Status s = threads_->CreateThread(Ctx().get(), {}, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.thread();
  }

  v1::Pointer Allocate(const std::string& thread, uint64_t size) {
    v1::AllocateRequest request;
    request.set_thread_id(thread);
    request.set_size(size);
    v1::AllocateResponse response;
    grpc::Status s = memory_->Allocate(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.pointer();
  }

  grpc::Status Direct(bool to_client, const std::string& pointer,
                      uint64_t offset, uint64_t length, const void* address,
                      uint64_t* copied = nullptr) {
    v1::DirectMemoryRequest request;
    request.set_pointer_id(pointer);
    request.set_offset(offset);
    request.set_length(length);
    request.set_client_address(reinterpret_cast<uint64_t>(address));
    v1::DirectMemoryResponse response;
    grpc::Status s =
        to_client ? memory_->ReadToClient(Ctx().get(), request, &response)
                  : memory_->WriteFromClient(Ctx().get(), request, &response);
    if (copied != nullptr) *copied = response.copied();
    return s;
  }

  std::string ReadUnary(const std::string& pointer, uint64_t offset,
                        uint64_t length) {
    v1::ReadMemoryRequest request;
    request.set_pointer_id(pointer);
    request.set_offset(offset);
    request.set_length(length);
    v1::ReadMemoryResponse response;
    grpc::Status s = memory_->Read(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.data();
  }

  RunResult Peer(int uid, std::vector<std::string> args) {
    std::vector<std::string> argv = {
        RunfilePath("tests/integration/direct_peer"), daemon_->socket_path(),
        absl::StrCat(uid)};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv);
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::unique_ptr<Threads::Stub> threads_;
  std::unique_ptr<Memory::Stub> memory_;
};

TEST_F(MemoryDirectTest, RoundTripThroughClientMemory) {
  constexpr size_t kSize = 8 << 20;
  v1::ThreadInfo t = CreateThread();
  v1::Pointer p = Allocate(t.id(), kSize);
  std::string source(kSize, '\0');
  std::mt19937_64 random(42);
  for (size_t i = 0; i < kSize; i += 8) {
    uint64_t v = random();
    memcpy(&source[i], &v, 8);
  }
  uint64_t copied = 0;
  grpc::Status s = Direct(false, p.id(), 0, kSize, source.data(), &copied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(copied, kSize);
  // The streamed path sees the same bytes.
  EXPECT_EQ(ReadUnary(p.id(), 12345, 4096), source.substr(12345, 4096));

  std::string back(kSize, 'x');
  s = Direct(true, p.id(), 0, kSize, back.data(), &copied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(copied, kSize);
  EXPECT_TRUE(back == source);

  // A sub-range at an offset, into the middle of a buffer.
  std::string part(100, '.');
  s = Direct(true, p.id(), 4000, 50, part.data() + 25);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(part.substr(0, 25), std::string(25, '.'));
  EXPECT_EQ(part.substr(25, 50), source.substr(4000, 50));
  EXPECT_EQ(part.substr(75), std::string(25, '.'));
}

TEST_F(MemoryDirectTest, OutOfRangeAndBadAddressesAreRefused) {
  v1::ThreadInfo t = CreateThread();
  v1::Pointer p = Allocate(t.id(), 4096);
  char buffer[8192];
  grpc::Status s = Direct(true, p.id(), 4000, 200, buffer);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE) << s.error_message();
  s = Direct(false, p.id(), 0, 4097, buffer);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE) << s.error_message();
  s = Direct(true, p.id(), 0, 16, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << s.error_message();
  s = Direct(true, "no-such-pointer", 0, 16, buffer);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();

  // An address that is not mapped in this client.
  void* hole = mmap(nullptr, 1 << 16, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
  ASSERT_NE(hole, MAP_FAILED);
  ASSERT_EQ(munmap(hole, 1 << 16), 0);
  s = Direct(true, p.id(), 0, 4096, hole);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("not mapped"));
  s = Direct(false, p.id(), 0, 4096, hole);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << s.error_message();
  // Read-only client memory cannot be read into.
  void* ro = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(ro, MAP_FAILED);
  s = Direct(true, p.id(), 0, 4096, ro);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << s.error_message();
  munmap(ro, 4096);

  // Still serving, and the pointer still works.
  EXPECT_TRUE(Direct(true, p.id(), 0, 4096, buffer).ok());
}

TEST_F(MemoryDirectTest, NobodysAddressIsAlwaysInItsOwnProcess) {
  // This (root) process has memory at the very address the uid-65534
  // client names; the copies must go to and from the client's own mapping
  // there, never this one.
  constexpr size_t kSize = 1 << 20;
  const uint64_t kAddress = 0x5a5a00000000;
  void* mine = mmap(reinterpret_cast<void*>(kAddress), kSize,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(mine, reinterpret_cast<void*>(kAddress));
  memset(mine, 'r', kSize);

  RunResult r = Peer(kNobody, {"same_address", absl::StrCat(kAddress)});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  // The thread got the client's 'n's (not root's 'r's), and the client got
  // the thread's 't's back into its own memory.
  EXPECT_EQ(r.out, "OK thread=ttttttttnnnnnnnn local=tn\n");
  const char* bytes = static_cast<const char*>(mine);
  for (size_t i = 0; i < kSize; i += 4096) {
    ASSERT_EQ(bytes[i], 'r') << "root's memory changed at offset " << i;
  }
  ASSERT_EQ(bytes[kSize - 1], 'r');
  munmap(mine, kSize);
}

TEST_F(MemoryDirectTest, AdminOnAnotherUsersThreadMustUseTheStreamedPath) {
  RunResult r = Peer(kNobody, {"persistent"});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::vector<std::string> words =
      absl::StrSplit(absl::string_view(r.out).substr(0, r.out.size() - 1), ' ');
  ASSERT_EQ(words.size(), 3u) << r.out;
  const std::string& thread = words[1];
  const std::string& pointer = words[2];

  // The copy would be made by nobody's agent into root's process: the
  // kernel refuses, and the daemon does not step in with its own privilege.
  std::string buffer(4096, 'r');
  grpc::Status s = Direct(true, pointer, 0, 4096, buffer.data());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("ReadStream"));
  EXPECT_EQ(buffer, std::string(4096, 'r'));
  s = Direct(false, pointer, 0, 4096, buffer.data());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("Write"));
  // The streamed path works for the admin, and nothing was overwritten.
  EXPECT_EQ(ReadUnary(pointer, 0, 11), "from nobody");

  v1::ExitThreadRequest exit;
  exit.set_id(thread);
  v1::ExitThreadResponse exited;
  EXPECT_TRUE(threads_->ExitThread(Ctx().get(), exit, &exited).ok());
}

}  // namespace
}  // namespace procwarp::testing
