// The start that tests of one agent thread's fds and memory share: a daemon
// with the procwarp-agent, the Threads, Memory and Files stubs on one
// connection (one session: the thread lives as long as it), one thread, and
// the two calls every such test makes (a syscall, a string in its memory).
#ifndef PROCWARP_TESTS_INTEGRATION_AGENT_THREAD_FIXTURE_H_
#define PROCWARP_TESTS_INTEGRATION_AGENT_THREAD_FIXTURE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {

class AgentThreadFixture : public ::testing::Test {
 protected:
  // Starts procwarpd (with extra `flags`) and creates the thread; a failure
  // fails the test (wrap the call in ASSERT_NO_FATAL_FAILURE).
  void StartDaemonAndThread(const std::vector<std::string>& flags = {});

  // The value of syscall `nr` run in the thread; an RPC error or an errno
  // fails the test.
  int64_t Sys(int64_t nr, std::vector<int64_t> args);

  // `s`, NUL-terminated, in fresh memory of the thread: its address.
  int64_t PutString(const std::string& s);

  std::unique_ptr<DaemonHarness> daemon_;
  std::unique_ptr<v1::Threads::Stub> threads_;
  std::unique_ptr<v1::Memory::Stub> memory_;
  std::unique_ptr<v1::Files::Stub> files_;
  std::string thread_;
  pid_t thread_pid_ = 0;
};

}  // namespace procwarp::testing

#endif  // PROCWARP_TESTS_INTEGRATION_AGENT_THREAD_FIXTURE_H_
