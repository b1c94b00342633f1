#include "tests/integration/agent_thread_fixture.h"

#include "tests/integration/test_channel.h"

namespace procwarp::testing {

void AgentThreadFixture::StartDaemonAndThread(const std::vector<std::string>& flags) {
  DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
  options.flags.insert(options.flags.end(), flags.begin(), flags.end());
  auto d = DaemonHarness::Start(options);
  ASSERT_TRUE(d.ok()) << d.status();
  daemon_ = *std::move(d);
  auto channel = daemon_->NewChannel();
  threads_ = v1::Threads::NewStub(channel);
  memory_ = v1::Memory::NewStub(channel);
  files_ = v1::Files::NewStub(channel);
  v1::CreateThreadResponse created;
  grpc::Status s = threads_->CreateThread(Ctx().get(), v1::CreateThreadRequest(), &created);
  ASSERT_TRUE(s.ok()) << s.error_message();
  thread_ = created.thread().id();
  thread_pid_ = created.thread().pid();
}

int64_t AgentThreadFixture::Sys(int64_t nr, std::vector<int64_t> args) {
  v1::SyscallRequest request;
  request.set_thread_id(thread_);
  request.mutable_syscall()->set_number(nr);
  for (int64_t a : args) request.mutable_syscall()->add_args(a);
  v1::SyscallResponse response;
  grpc::Status s = threads_->Syscall(Ctx().get(), request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.result().error(), 0);
  return response.result().value();
}

int64_t AgentThreadFixture::PutString(const std::string& s) {
  v1::AllocateRequest request;
  request.set_thread_id(thread_);
  request.set_size(s.size() + 1);
  v1::AllocateResponse allocated;
  EXPECT_TRUE(memory_->Allocate(Ctx().get(), request, &allocated).ok());
  v1::WriteMemoryRequest write;
  write.set_pointer_id(allocated.pointer().id());
  write.set_data(std::string(s.c_str(), s.size() + 1));
  v1::WriteMemoryResponse written;
  EXPECT_TRUE(memory_->Write(Ctx().get(), write, &written).ok());
  return static_cast<int64_t>(allocated.pointer().address());
}

}  // namespace procwarp::testing
