// Per-identity bounds on what a caller can make procwarpd hold (security
// issue, points 5-7): for each, an unprivileged client (uid 65534, running
// tests/integration/limits_peer) pushes past the limit and is refused with
// RESOURCE_EXHAUSTED (or INVALID_ARGUMENT for oversized requests), while
// root keeps being served (`status`, `ps --all` paged through, an Events
// stream) and the daemon's threads, fds and resident memory stay under a
// stated bound. The attacker's own legitimate use within the limits works
// (the calls admitted before the limit are the positive control).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

extern char** environ;

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int kNobody = 65534;

// Under ASan freed memory sits in a quarantine, so resident size says
// nothing there; the RSS bounds are checked in normal builds only.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssIsMeaningful = false;
#else
constexpr bool kRssIsMeaningful = true;
#endif

// The daemon's thread count (/proc/PID/status Threads:).
int DaemonThreads(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return atoi(line.c_str() + 8);
  }
  return -1;
}

// Idle gRPC handler threads exit on their own shortly after their call; waits
// (bounded) for the count to settle at or below `bound`, returning the last
// count seen.
int ThreadsSettleAtMost(pid_t pid, int bound) {
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  int n = DaemonThreads(pid);
  while (n > bound && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    n = DaemonThreads(pid);
  }
  return n;
}

// limits_peer running as uid 65534: started with pipes on its stdin and
// stdout; it holds what it got until Release() closes its stdin.
class Attacker {
 public:
  Attacker(const std::string& socket, std::vector<std::string> op) {
    std::vector<std::string> args = PeerCommand("limits_peer", socket, kNobody, op);
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) abort();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) {
      abort();
    }
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    stdout_ = fdopen(out[0], "r");
  }
  ~Attacker() { Release(); }

  // The next line it prints (without the newline); "" at EOF.
  std::string Line() {
    char* line = nullptr;
    size_t size = 0;
    ssize_t n = getline(&line, &size, stdout_);
    std::string result = n > 0 ? std::string(line, n) : "";
    free(line);
    if (!result.empty() && result.back() == '\n') result.pop_back();
    return result;
  }

  // Lets go of everything; returns its last line ("DONE ...") and its exit.
  std::string Release() {
    if (pid_ < 0) return "";
    close(stdin_);
    std::string last, line;
    while (!(line = Line()).empty()) last = line;
    fclose(stdout_);
    int status = 0;
    waitpid(pid_, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    pid_ = -1;
    return last;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  FILE* stdout_ = nullptr;
};

// "READY A=1,B=2 error=..." -> count of `code`.
int CountOf(const std::string& ready, const std::string& code) {
  size_t at = ready.find(code + "=");
  if (at == std::string::npos) return 0;
  return atoi(ready.c_str() + at + code.size() + 1);
}

class LimitsTest : public ::testing::Test {
 protected:
  void StartDaemon(std::vector<std::string> flags) {
    auto options = DaemonHarness::Options::WithAgent();
    options.flags.insert(options.flags.end(), flags.begin(), flags.end());
    auto d = DaemonHarness::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    stub_ = daemon_->Processes();
  }

  // Root is served while the attacker holds its share: `status`, every page
  // of `ps --all`, and an Events stream that sees a process root starts.
  void ExpectRootServed() {
    auto admin = daemon_->Admin();
    procwarp::v1::GetStatusResponse status;
    grpc::Status s = admin->GetStatus(Ctx().get(), {}, &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(status.caller().admin());

    ListAll();

    auto events_context = Ctx();
    auto events = stub_->Events(events_context.get(), {});
    events->WaitForInitialMetadata();
    procwarp::v1::SpawnResponse spawned;
    s = stub_->Spawn(Ctx().get(), PipedSpawn({"/bin/true"}), &spawned);
    ASSERT_TRUE(s.ok()) << s.error_message();
    procwarp::v1::ProcessEvent event;
    bool seen = false;
    while (!seen && events->Read(&event)) {
      seen = event.process().id() == spawned.process().id();
    }
    EXPECT_TRUE(seen) << "root's Events stream did not deliver its own spawn";
    events_context->TryCancel();
    events->Finish();
    procwarp::v1::RemoveProcessRequest remove;
    remove.set_id(spawned.process().id());
    remove.set_force(true);
    procwarp::v1::RemoveProcessResponse removed;
    EXPECT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
  }

  // `ps --all`: every page, each within the message limits.
  std::vector<procwarp::v1::ProcessInfo> ListAll(int* pages = nullptr) {
    std::vector<procwarp::v1::ProcessInfo> all;
    procwarp::v1::ListProcessesRequest request;
    request.set_all(true);
    int n = 0;
    do {
      procwarp::v1::ListProcessesResponse response;
      grpc::Status s = stub_->List(Ctx().get(), request, &response);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) break;
      ++n;
      EXPECT_LE(response.ByteSizeLong(), 4u << 20);
      all.insert(all.end(), response.processes().begin(),
                 response.processes().end());
      request.set_page_token(response.next_page_token());
    } while (!request.page_token().empty());
    if (pages != nullptr) *pages = n;
    return all;
  }

  // Every process of every user, killed and forgotten.
  void RemoveAll() {
    for (const auto& p : ListAll()) {
      procwarp::v1::RemoveProcessRequest remove;
      remove.set_id(p.id());
      remove.set_force(true);
      procwarp::v1::RemoveProcessResponse removed;
      EXPECT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
    }
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::unique_ptr<procwarp::v1::Processes::Stub> stub_;
};

// Blocked calls: 40 Threads.Syscall(pause) from one user. Only
// max_calls_per_identity of them get a daemon thread; the rest are refused
// at once, naming the limit; root is served meanwhile.
TEST_F(LimitsTest, BlockedSyscallsPinAtMostTheCallLimit) {
  StartDaemon({"--max_calls_per_identity", "8"});
  const int threads_before = DaemonThreads(daemon_->pid());
  Attacker attacker(daemon_->socket_path(), {"syscalls", "40", "32"});
  std::string ready = attacker.Line();
  ASSERT_THAT(ready, StartsWith("READY")) << ready;
  EXPECT_EQ(CountOf(ready, "RESOURCE_EXHAUSTED"), 32) << ready;
  EXPECT_THAT(ready, HasSubstr("concurrent calls in progress; the limit is 8"));
  // 8 handlers wait in pause(2), plus the agent thread's own and gRPC's
  // pollers: far from 40.
  const int bound = threads_before + 8 + 6;
  EXPECT_LE(ThreadsSettleAtMost(daemon_->pid(), bound), bound);
  ExpectRootServed();
  attacker.Release();
}

// Processes.Wait is long-lived: it counts against the stream limit too.
TEST_F(LimitsTest, WaitsCountAsStreams) {
  StartDaemon({"--max_streams_per_identity", "5"});
  const int threads_before = DaemonThreads(daemon_->pid());
  Attacker attacker(daemon_->socket_path(), {"waits", "30", "25"});
  std::string ready = attacker.Line();
  ASSERT_THAT(ready, StartsWith("READY")) << ready;
  EXPECT_EQ(CountOf(ready, "RESOURCE_EXHAUSTED"), 25) << ready;
  EXPECT_THAT(ready, HasSubstr("open streams"));
  const int bound = threads_before + 5 + 6;
  EXPECT_LE(ThreadsSettleAtMost(daemon_->pid(), bound), bound);
  ExpectRootServed();
  attacker.Release();
}

// WriteStreams that never send: each would hold a handler thread in Read.
TEST_F(LimitsTest, StalledWriteStreamsAreBounded) {
  StartDaemon({"--max_streams_per_identity", "6"});
  const int threads_before = DaemonThreads(daemon_->pid());
  Attacker attacker(daemon_->socket_path(), {"write_streams", "50", "44"});
  std::string ready = attacker.Line();
  ASSERT_THAT(ready, StartsWith("READY")) << ready;
  EXPECT_EQ(CountOf(ready, "RESOURCE_EXHAUSTED"), 44) << ready;
  const int bound = threads_before + 6 + 6;
  EXPECT_LE(ThreadsSettleAtMost(daemon_->pid(), bound), bound);
  ExpectRootServed();
  attacker.Release();
}

// Server-reflection streams run gRPC's own handler, outside WithSession;
// they are admitted by an interceptor and count as streams too (refused ones
// are cancelled: an interceptor cannot pick the status).
TEST_F(LimitsTest, ReflectionStreamsAreBounded) {
  StartDaemon({"--max_streams_per_identity", "5"});
  const int threads_before = DaemonThreads(daemon_->pid());
  Attacker attacker(daemon_->socket_path(), {"reflection_streams", "30", "25"});
  std::string ready = attacker.Line();
  ASSERT_THAT(ready, StartsWith("READY")) << ready;
  EXPECT_EQ(CountOf(ready, "CANCELLED"), 25) << ready;
  const int bound = threads_before + 5 + 6;
  EXPECT_LE(ThreadsSettleAtMost(daemon_->pid(), bound), bound);
  ExpectRootServed();
  attacker.Release();
}

// ReadStreams of 8 MiB that are never read: each holds a thread and what
// gRPC buffers for it. Bounded by the stream limit in count, so in memory.
TEST_F(LimitsTest, UnreadReadStreamsAreBounded) {
  StartDaemon({"--max_streams_per_identity", "4"});
  const long rss_before = daemon_->RssKb();
  Attacker attacker(daemon_->socket_path(), {"read_streams", "40", "36"});
  std::string ready = attacker.Line();
  ASSERT_THAT(ready, StartsWith("READY")) << ready;
  EXPECT_EQ(CountOf(ready, "RESOURCE_EXHAUSTED"), 36) << ready;
  if (kRssIsMeaningful) {
    // 4 streams hold at most a few MiB each (a 1 MiB chunk being written
    // and the flow-control window); 40 would be ~90 MiB.
    EXPECT_LT(daemon_->RssKb() - rss_before, 40 * 1024);
  }
  ExpectRootServed();
  attacker.Release();
}

// Idle connections: past max_connections_per_identity they are closed at
// accept, so the daemon's fds stay bounded and root still gets in.
TEST_F(LimitsTest, IdleConnectionsPerUserAreBounded) {
  StartDaemon({"--max_connections_per_identity", "10"});
  const int fds_before = daemon_->CountFds();
  Attacker attacker(daemon_->socket_path(), {"connections", "40"});
  std::string ready = attacker.Line();
  ASSERT_THAT(ready, StartsWith("READY")) << ready;
  EXPECT_EQ(CountOf(ready, "OK"), 10) << ready;
  EXPECT_EQ(CountOf(ready, "UNAVAILABLE"), 30) << ready;
  // Three fds per connection (gRPC's, the registry's duplicate, the peer's
  // pidfd) for 10 connections, and slack for a refused one in flight.
  EXPECT_LE(daemon_->CountFds(), fds_before + 3 * 10 + 4);
  // Root connects (several times) and is served.
  for (int i = 0; i < 3; ++i) {
    procwarp::v1::GetStatusResponse status;
    EXPECT_TRUE(
        daemon_->Admin()->GetStatus(Ctx().get(), {}, &status).ok());
  }
  ExpectRootServed();
  attacker.Release();
}

// The fd reserve: with few fds left under RLIMIT_NOFILE, a user's
// connections are refused before the last `fd_reserve` are used, and root
// still connects. (The daemon's limit is lowered from outside with
// prlimit.)
TEST_F(LimitsTest, FdReserveKeepsRootConnecting) {
  StartDaemon({"--max_connections_per_identity", "1000", "--fd_reserve", "48"});
  const int fds_now = daemon_->CountFds();
  // Only the soft limit: children still get their usual limit back.
  struct rlimit low {};
  ASSERT_EQ(prlimit(daemon_->pid(), RLIMIT_NOFILE, nullptr, &low), 0);
  low.rlim_cur = fds_now + 100;
  ASSERT_EQ(prlimit(daemon_->pid(), RLIMIT_NOFILE, &low, nullptr), 0);
  Attacker attacker(daemon_->socket_path(), {"connections", "60"});
  std::string ready = attacker.Line();
  ASSERT_THAT(ready, StartsWith("READY")) << ready;
  // Some got in, the rest were refused before the reserve.
  EXPECT_GT(CountOf(ready, "OK"), 0) << ready;
  EXPECT_GT(CountOf(ready, "UNAVAILABLE"), 0) << ready;
  EXPECT_LE(daemon_->CountFds(), fds_now + 100 - 48 + 3);
  for (int i = 0; i < 5; ++i) {
    std::unique_ptr<procwarp::v1::Admin::Stub> admin =
        procwarp::v1::Admin::NewStub(daemon_->NewChannel());
    procwarp::v1::GetStatusResponse status;
    grpc::Status s = admin->GetStatus(Ctx().get(), {}, &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  ExpectRootServed();
  attacker.Release();
}

// Labels: more than 64 KiB per request is refused; records within the bound
// from one user (more bytes than one message holds, all told) do not stop
// root's `ps --all`, which pages through them.
TEST_F(LimitsTest, HugeLabelsAreRefusedAndListPages) {
  StartDaemon({});
  {
    Attacker huge(daemon_->socket_path(), {"spawn_labels", "1", "4194304"});
    std::string ready = huge.Line();
    EXPECT_EQ(CountOf(ready, "INVALID_ARGUMENT"), 1) << ready;
    EXPECT_THAT(ready, HasSubstr("labels take"));
  }
  Attacker attacker(daemon_->socket_path(), {"spawn_labels", "80", "65536"});
  std::string ready = attacker.Line();
  ASSERT_EQ(CountOf(ready, "OK"), 80) << ready;
  int pages = 0;
  std::vector<procwarp::v1::ProcessInfo> all = ListAll(&pages);
  EXPECT_EQ(all.size(), 80u);
  EXPECT_GE(pages, 2);  // 80 x 64 KiB does not fit one 4 MiB message
  // Pages are in id order, none repeated.
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].id(), all[i].id());
  // A small page size is honoured.
  procwarp::v1::ListProcessesRequest request;
  request.set_all(true);
  request.set_page_size(7);
  procwarp::v1::ListProcessesResponse page;
  ASSERT_TRUE(stub_->List(Ctx().get(), request, &page).ok());
  EXPECT_EQ(page.processes_size(), 7);
  EXPECT_EQ(page.next_page_token(), page.processes(6).id());
  ExpectRootServed();
  attacker.Release();
  // The attacker's session ended, but its processes stay (they are not
  // tied to the connection); clean up.
  RemoveAll();
}

// The bytes of argv and labels one user's process records hold together are
// bounded: past max_record_bytes_per_identity Spawn is refused until a
// record is removed.
TEST_F(LimitsTest, RecordBytesPerUserAreBounded) {
  StartDaemon({"--max_record_bytes_per_identity", "1048576"});
  // Each record: 61440 bytes of labels plus "/bin/sleep" "1000".
  Attacker attacker(daemon_->socket_path(), {"spawn_labels", "30", "61440"});
  std::string ready = attacker.Line();
  EXPECT_EQ(CountOf(ready, "OK"), 17) << ready;
  EXPECT_EQ(CountOf(ready, "RESOURCE_EXHAUSTED"), 13) << ready;
  EXPECT_THAT(ready, HasSubstr("bytes of argv and labels in process records"));
  ExpectRootServed();
  // Removing one of its records makes room for another.
  std::vector<procwarp::v1::ProcessInfo> records = ListAll();
  ASSERT_EQ(records.size(), 17u);
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(records[0].id());
  remove.set_force(true);
  procwarp::v1::RemoveProcessResponse removed;
  ASSERT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
  {
    Attacker again(daemon_->socket_path(), {"spawn_labels", "2", "61440"});
    std::string line = again.Line();
    EXPECT_EQ(CountOf(line, "OK"), 1) << line;
    EXPECT_EQ(CountOf(line, "RESOURCE_EXHAUSTED"), 1) << line;
  }
  attacker.Release();
  for (const auto& p : ListAll()) {
    remove.set_id(p.id());
    EXPECT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
  }
}

// The same for threads: labels are bounded per CreateThread, and root's
// ListThreads(all) pages through one user's maximal records.
TEST_F(LimitsTest, HugeThreadLabelsAreRefusedAndListThreadsPages) {
  StartDaemon({});
  {
    Attacker huge(daemon_->socket_path(), {"thread_labels", "1", "4194304"});
    std::string ready = huge.Line();
    EXPECT_EQ(CountOf(ready, "INVALID_ARGUMENT"), 1) << ready;
    EXPECT_THAT(ready, HasSubstr("labels take"));
  }
  Attacker attacker(daemon_->socket_path(), {"thread_labels", "80", "65536"});
  std::string ready = attacker.Line();
  ASSERT_EQ(CountOf(ready, "OK"), 80) << ready;
  auto threads = procwarp::v1::Threads::NewStub(daemon_->NewChannel());
  procwarp::v1::ListThreadsRequest request;
  request.set_all(true);
  int pages = 0;
  std::vector<std::string> ids;
  do {
    procwarp::v1::ListThreadsResponse response;
    grpc::Status s = threads->ListThreads(Ctx().get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ++pages;
    EXPECT_LE(response.ByteSizeLong(), 4u << 20);
    for (const auto& t : response.threads()) ids.push_back(t.id());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(ids.size(), 80u);
  EXPECT_GE(pages, 2);
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i - 1], ids[i]);
  ExpectRootServed();
  attacker.Release();
}

// An Events stream that is never read while its owner makes ~3 x 200 x 60
// KiB of events: the subscriber is dropped past its byte bound instead of
// the daemon holding them, and learns how many it lost.
TEST_F(LimitsTest, UnreadEventsStreamIsBoundedInBytes) {
  StartDaemon({"--max_queued_event_bytes", "1048576"});
  const long rss_before = daemon_->RssKb();
  Attacker attacker(daemon_->socket_path(), {"events", "200", "61440"});
  std::string ready = attacker.Line();
  ASSERT_EQ(ready, "READY spawned=200");
  if (kRssIsMeaningful) {
    // 35 MiB of events were produced for this subscriber.
    EXPECT_LT(daemon_->RssKb() - rss_before, 16 * 1024);
  }
  ExpectRootServed();
  std::string done = attacker.Release();
  EXPECT_THAT(done, HasSubstr("status=RESOURCE_EXHAUSTED you were too slow"));
  EXPECT_THAT(done, HasSubstr("events dropped"));
}

// `dd bs=1`: one-byte writes make one-byte chunks; the ring counts their
// overhead, so a 64 KiB ring holds few of them and the daemon's memory does
// not grow with the number of writes.
TEST_F(LimitsTest, OneByteWritesCannotInflateTheOutputRing) {
  StartDaemon({"--output_buffer_bytes", "65536"});
  const long rss_before = daemon_->RssKb();
  procwarp::v1::SpawnResponse spawned;
  ASSERT_TRUE(stub_->Spawn(Ctx().get(),
                           PipedSpawn({"/bin/dd", "if=/dev/zero", "bs=1",
                                       "count=200000", "status=none"}),
                           &spawned)
                  .ok());
  procwarp::v1::WaitRequest wait;
  wait.set_id(spawned.process().id());
  procwarp::v1::WaitResponse waited;
  ASSERT_TRUE(stub_->Wait(Ctx(absl::Seconds(120)).get(), wait, &waited).ok());
  if (kRssIsMeaningful) {
    // Counting data bytes only, 65536 one-byte chunks took ~7 MiB.
    EXPECT_LT(daemon_->RssKb() - rss_before, 4 * 1024);
  }
  // What the ring holds, replayed: each chunk counts at least 64 bytes of
  // overhead, so at most 65536 / 64 chunks, whatever size they are.
  auto context = Ctx();
  auto attach = stub_->Attach(context.get());
  procwarp::v1::AttachRequest first;
  first.set_id(spawned.process().id());
  first.set_close_stdin(true);
  ASSERT_TRUE(attach->Write(first));
  attach->WritesDone();
  size_t chunks = 0, bytes = 0;
  bool exited = false;
  procwarp::v1::AttachResponse message;
  while (attach->Read(&message)) {
    if (message.has_output()) {
      ++chunks;
      bytes += message.output().data().size();
    }
    exited |= message.has_exit();
  }
  EXPECT_TRUE(attach->Finish().ok());
  EXPECT_TRUE(exited);
  EXPECT_GT(bytes, 0u);
  EXPECT_LE(chunks, 65536u / 64) << bytes << " bytes";
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  procwarp::v1::RemoveProcessResponse removed;
  EXPECT_TRUE(stub_->Remove(Ctx().get(), remove, &removed).ok());
}

// gRPC's own message limit holds on the daemon's connections (which it gets
// from the Listener, not a listening port): a 7 MiB request is refused before
// any handler runs, and the daemon goes on serving.
TEST_F(LimitsTest, OversizedRequestIsRefusedByGrpc) {
  StartDaemon({});
  procwarp::v1::SpawnRequest request = PipedSpawn({"/bin/true"});
  (*request.mutable_labels())["big"] = std::string(7 << 20, 'L');
  procwarp::v1::SpawnResponse spawned;
  grpc::Status s = stub_->Spawn(Ctx().get(), request, &spawned);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("larger than max"));
  ExpectRootServed();
}

// GetStatus: a non-admin sees its own connections and processes only; root
// sees the totals.
TEST_F(LimitsTest, NonAdminStatusCountsOnlyItsOwn) {
  StartDaemon({});
  // Root's processes, which uid 65534 must not see counted.
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    procwarp::v1::SpawnResponse spawned;
    ASSERT_TRUE(stub_->Spawn(Ctx().get(), PipedSpawn({"/bin/sleep", "1000"}),
                             &spawned)
                    .ok());
    ids.push_back(spawned.process().id());
  }
  Attacker own(daemon_->socket_path(), {"spawn_labels", "2", "0"});
  ASSERT_EQ(CountOf(own.Line(), "OK"), 2);
  RunResult r = RunProgram({RunfilePath("tests/integration/limits_peer"),
                            "--socket", daemon_->socket_path(), "--uid",
                            absl::StrCat(kNobody), "--gid",
                            absl::StrCat(kNobody), "status"});
  // Its own: the status call's connection and the helper still holding
  // one; its 2 processes.
  EXPECT_EQ(r.out, "OK clients=2 processes=2 running=2\n");
  procwarp::v1::GetStatusResponse status;
  ASSERT_TRUE(daemon_->Admin()->GetStatus(Ctx().get(), {}, &status).ok());
  EXPECT_EQ(status.processes(), 5);
  EXPECT_EQ(status.running_processes(), 5);
  EXPECT_GE(status.clients(), 2);
  own.Release();
  RemoveAll();
}

// Fairness (docs/architecture.md, "Fairness under load"): one user floods
// Spawn+Wait+Remove of /bin/true from 64 connections, as many as its call
// limit; another user's cheap calls (GetStatus, List, a Wait on its own
// exited child) are all answered before the flood is over, and root is
// served too. No clock is read: the flood's own count is the bound.
TEST_F(LimitsTest, CheapCallsAnswerDuringAnotherUsersSpawnFlood) {
  StartDaemon({});
  constexpr int kOtherUser = 65533;
  auto cheap_calls = [&](int rounds) {
    return RunProgram(PeerCommand("limits_peer", daemon_->socket_path(),
                                  kOtherUser,
                                  {"cheap_calls", absl::StrCat(rounds)}))
        .out;
  };
  // Root's own connection and what the daemon opens once, at a first spawn
  // for another uid, count in the baseline.
  EXPECT_EQ(cheap_calls(1), "DONE answered=3 failed=none\n");
  RemoveAll();
  const int fds_before = daemon_->AwaitFdsAtMost(0, absl::Seconds(1));
  Attacker flood(daemon_->socket_path(), {"spawn_flood", "64", "300"});
  ASSERT_EQ(flood.Line(), "READY");
  EXPECT_EQ(cheap_calls(20), "DONE answered=60 failed=none\n");
  ExpectRootServed();
  std::string done = flood.Release();
  ASSERT_THAT(done, StartsWith("DONE")) << done;
  EXPECT_GT(CountOf(done, "still_flooding"), 0)
      << "the flood was over before the other user's calls were answered: "
      << done;
  EXPECT_GT(CountOf(done, "OK"), 0) << done;
  // What the peers left (the other user's child; a flood round whose
  // Remove was refused at the call limit) goes; then nothing else is held.
  RemoveAll();
  EXPECT_LE(daemon_->AwaitFdsAtMost(fds_before), fds_before);
}

}  // namespace
}  // namespace procwarp::testing
