// The spawn window (issue 8, point 1 and the spawn parts of 5 and 6), attacked
// as uid 65534 by the spawn_attacker helper against a real daemon:
//  - a spawn child blocked opening the caller's FIFO (with and without a new
//    user namespace) gives the caller nothing of the daemon: not its memory
//    (/proc/PID/mem, process_vm_*), not its fds (/proc/PID/fd, pidfd_getfd),
//    no ptrace; the child is not dumpable until execve;
//  - the daemon keeps serving root while the spawn waits; the waiting spawn
//    counts against the caller's process limit and is cancellable and bounded
//    (--spawn_timeout_ms), leaving no child, zombie or fd behind;
//  - concurrent spawns and Threads.Exec cannot go past the process limit,
//    and the spawns one identity has in flight (each holding a daemon
//    thread) are capped on their own;
//  - positive controls: the same user spawns with a regular file and with a
//    FIFO that has a writer as stdin, and gets "0 <uid> 1" maps with
//    setgroups denied in a new user namespace.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int kNobody = 65534;

// The spawn_attacker helper as uid 65534, with a pipe to its stdin and one
// from its stdout, so the test can act between its steps.
class Attacker {
 public:
  Attacker(const DaemonHarness& daemon, const std::vector<std::string>& op) {
    std::vector<std::string> args = {"--daemon_pid", absl::StrCat(daemon.pid())};
    args.insert(args.end(), op.begin(), op.end());
    std::vector<std::string> argv =
        PeerCommand("spawn_attacker", daemon.socket_path(), kNobody, args);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) abort();
    pid_ = fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls until exec: the test has threads.
      dup2(in[0], 0);
      dup2(out[1], 1);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~Attacker() { Finish(); }

  // The next line it printed ("" at EOF or after a minute of silence).
  std::string ReadLine() {
    for (;;) {
      size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      pollfd pfd = {from_, POLLIN, 0};
      if (poll(&pfd, 1, 60000) != 1) return "";
      char chunk[4096];
      ssize_t n = read(from_, chunk, sizeof(chunk));
      if (n <= 0) return "";
      buffer_.append(chunk, n);
    }
  }

  void Send(const std::string& line) {
    std::string text = line + "\n";
    ASSERT_EQ(write(to_, text.data(), text.size()),
              static_cast<ssize_t>(text.size()));
  }

  // Closes its stdin and returns its exit code.
  int Finish() {
    if (pid_ <= 0) return exit_code_;
    close(to_);
    int status = 0;
    waitpid(pid_, &status, 0);
    close(from_);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  std::string buffer_;  // read, not yet returned
  int exit_code_ = -1;
};

// "key=value key=value" after the first word, as a map.
std::map<std::string, std::string> Fields(const std::string& line) {
  std::map<std::string, std::string> fields;
  for (absl::string_view word : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(word, '=');
    if (!kv.second.empty()) fields[kv.first] = kv.second;
  }
  return fields;
}

class SpawnSecurityTest : public ::testing::Test {
 protected:
  void StartDaemon(std::vector<std::string> flags, bool with_agent = false) {
    DaemonHarness::Options options =
        with_agent ? DaemonHarness::Options::WithAgent() : DaemonHarness::Options();
    options.flags.insert(options.flags.end(), flags.begin(), flags.end());
    auto d = DaemonHarness::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    // A directory the attacker owns, for its FIFOs and files.
    dir_ = MakeTempDir();
    ASSERT_EQ(chown(dir_.c_str(), kNobody, kNobody), 0);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // The attacker's blocked-spawn script up to "ready": checks the probes of
  // the pending child, which must show nothing of the daemon reachable.
  // Returns the child's pid.
  pid_t ExpectBlockedChildOutOfReach(Attacker& attacker, bool userns) {
    std::string line = attacker.ReadLine();
    EXPECT_THAT(line, StartsWith("child pid=")) << line;
    pid_t child = atoi(Fields(line)["pid"].c_str());
    line = attacker.ReadLine();
    EXPECT_THAT(line, StartsWith("probe ")) << line;
    std::map<std::string, std::string> probe = Fields(line);
    // Not dumpable: /proc/PID/fd belongs to root though the process is ours.
    EXPECT_EQ(probe["owner"], "0") << line;
    EXPECT_EQ(probe["uid"], absl::StrCat(kNobody)) << line;
    // Still the daemon's image (before execve), sharing its memory.
    EXPECT_EQ(probe["image"], "daemon") << line;
    for (const char* key : {"mem_rw", "mem_ro", "fd_dir", "fd_link", "maps",
                            "environ"}) {
      EXPECT_THAT(probe[key], AnyOf("EACCES", "EPERM")) << key << ": " << line;
    }
    for (const char* key : {"vm_read", "vm_write", "getfd", "ptrace"}) {
      EXPECT_EQ(probe[key], "EPERM") << key << ": " << line;
    }
    if (userns) {
      line = attacker.ReadLine();
      EXPECT_EQ(line, absl::StrCat("maps uid_map=[0 ", kNobody, " 1] gid_map=[0 ",
                                   kNobody, " 1] setgroups=[deny]"));
    }
    // The waiting spawn holds the user's one slot.
    EXPECT_THAT(attacker.ReadLine(), StartsWith("second RESOURCE_EXHAUSTED"));
    EXPECT_EQ(attacker.ReadLine(), "ready");
    return child;
  }

  // Root is served while the attacker's spawn waits.
  void ExpectRootServed() {
    procwarp::v1::GetStatusResponse status;
    EXPECT_TRUE(daemon_->Admin()->GetStatus(Ctx().get(), {}, &status).ok());
    auto stub = daemon_->Processes();
    procwarp::v1::SpawnResponse spawned;
    ASSERT_TRUE(stub->Spawn(Ctx().get(), PipedSpawn({"/bin/true"}), &spawned).ok());
    procwarp::v1::WaitRequest wait;
    wait.set_id(spawned.process().id());
    procwarp::v1::WaitResponse waited;
    ASSERT_TRUE(stub->Wait(Ctx().get(), wait, &waited).ok());
    EXPECT_EQ(waited.process().exit_status().code(), 0);
    procwarp::v1::RemoveProcessRequest remove;
    remove.set_id(spawned.process().id());
    procwarp::v1::RemoveProcessResponse removed;
    EXPECT_TRUE(stub->Remove(Ctx().get(), remove, &removed).ok());
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::string dir_;
};

TEST_F(SpawnSecurityTest, FifoStdinChildGivesNothingOfTheDaemonAndIsCancellable) {
  StartDaemon({"--max_processes_per_identity", "1"});
  Attacker attacker(*daemon_, {"blocked", dir_});
  EXPECT_EQ(attacker.ReadLine(), "warm_up OK exit=0");
  attacker.Send("go");
  pid_t child = ExpectBlockedChildOutOfReach(attacker, /*userns=*/false);
  ExpectRootServed();

  attacker.Send("cancel");
  EXPECT_THAT(attacker.ReadLine(), StartsWith("result CANCELLED"));
  // Killed and reaped by the daemon: no zombie; the slot is free again.
  EXPECT_EQ(attacker.ReadLine(), "gone=1");
  EXPECT_EQ(attacker.ReadLine(), "after OK exit=0");
  EXPECT_EQ(attacker.Finish(), 0);
  EXPECT_NE(kill(child, 0), 0);
}

TEST_F(SpawnSecurityTest, BlockedSpawnIsBoundedAndLeavesNoFdBehind) {
  StartDaemon({"--max_processes_per_identity", "1", "--spawn_timeout_ms", "3000"});
  Attacker attacker(*daemon_, {"blocked", dir_});
  EXPECT_EQ(attacker.ReadLine(), "warm_up OK exit=0");
  const int baseline_fds = daemon_->CountFds();
  attacker.Send("go");
  ExpectBlockedChildOutOfReach(attacker, /*userns=*/false);
  // Stopped by its caller, the child still cannot hold the spawn past the
  // deadline (no vfork-style wait for it).
  attacker.Send("stop");
  EXPECT_EQ(attacker.ReadLine(), "stopped OK");
  std::string result = attacker.ReadLine();
  EXPECT_THAT(result, StartsWith("result DEADLINE_EXCEEDED"));
  // The message says where the child was stuck.
  EXPECT_THAT(result, HasSubstr(dir_ + "/stdin-fifo"));
  EXPECT_EQ(attacker.ReadLine(), "gone=1");
  EXPECT_EQ(attacker.ReadLine(), "after OK exit=0");
  // The attacker is still connected, as at the baseline.
  EXPECT_EQ(daemon_->CountFds(), baseline_fds);
  EXPECT_EQ(attacker.Finish(), 0);
  ExpectRootServed();
}

TEST_F(SpawnSecurityTest, UserNamespaceChildIsMappedByTheDaemonAndOutOfReach) {
  StartDaemon({"--max_processes_per_identity", "1"});
  Attacker attacker(*daemon_, {"blocked", dir_, "--userns"});
  EXPECT_EQ(attacker.ReadLine(), "warm_up OK exit=0");
  attacker.Send("go");
  ExpectBlockedChildOutOfReach(attacker, /*userns=*/true);
  ExpectRootServed();
  attacker.Send("cancel");
  EXPECT_THAT(attacker.ReadLine(), StartsWith("result CANCELLED"));
  EXPECT_EQ(attacker.ReadLine(), "gone=1");
  EXPECT_EQ(attacker.ReadLine(), "after OK exit=0");
  EXPECT_EQ(attacker.Finish(), 0);
}

TEST_F(SpawnSecurityTest, ReleasedFifoSpawnCompletes) {
  StartDaemon({"--max_processes_per_identity", "1"});
  Attacker attacker(*daemon_, {"blocked", dir_});
  EXPECT_EQ(attacker.ReadLine(), "warm_up OK exit=0");
  attacker.Send("go");
  ExpectBlockedChildOutOfReach(attacker, /*userns=*/false);
  attacker.Send("release");
  EXPECT_EQ(attacker.ReadLine(), "result OK ");
  EXPECT_EQ(attacker.Finish(), 0);
}

TEST_F(SpawnSecurityTest, SameUserSpawnsWithFileAndFifoWithWriterAndUserns) {
  StartDaemon({"--max_processes_per_identity", "1"});
  {
    Attacker attacker(*daemon_, {"file_stdin", dir_});
    EXPECT_EQ(attacker.ReadLine(), "OK exit=0");
    EXPECT_EQ(attacker.Finish(), 0);
  }
  {
    Attacker attacker(*daemon_, {"fifo_with_writer", dir_});
    EXPECT_EQ(attacker.ReadLine(), "OK exit=0");
    EXPECT_EQ(attacker.Finish(), 0);
  }
  {
    Attacker attacker(*daemon_, {"userns_maps"});
    EXPECT_EQ(attacker.ReadLine(),
              absl::StrCat("OK 0 ", kNobody, " 1|0 ", kNobody, " 1|deny"));
    EXPECT_EQ(attacker.Finish(), 0);
  }
}

TEST_F(SpawnSecurityTest, ConcurrentSpawnsCannotOvershootTheLimit) {
  StartDaemon({"--max_processes_per_identity", "3"});
  Attacker attacker(*daemon_, {"concurrent", "8", dir_});
  EXPECT_EQ(attacker.ReadLine(), "ok=3 exhausted=5 other=0 ");
  EXPECT_EQ(attacker.Finish(), 0);
}

TEST_F(SpawnSecurityTest, SpawnsInFlightAreCappedAndOthersStillServed) {
  // Room for 10 processes, but only 2 may be starting at once: the third
  // blocked spawn is refused instead of pinning another daemon thread.
  StartDaemon({"--max_processes_per_identity", "10",
               "--max_spawns_in_flight_per_identity", "2"});
  Attacker attacker(*daemon_, {"concurrent", "3", dir_});
  std::string line = attacker.ReadLine();
  EXPECT_EQ(line, "ok=2 exhausted=1 other=0 ");
  EXPECT_EQ(attacker.Finish(), 0);
  ExpectRootServed();
}

TEST_F(SpawnSecurityTest, ExecCannotAdoptPastTheLimitAndLeaksNothing) {
  StartDaemon({"--max_processes_per_identity", "1"}, /*with_agent=*/true);
  Attacker attacker(*daemon_, {"exec_over_limit"});
  EXPECT_EQ(attacker.ReadLine(), "spawn OK");
  EXPECT_THAT(attacker.ReadLine(), StartsWith("exec RESOURCE_EXHAUSTED"));
  // The refused thread still answers, as the same process; nothing else
  // appeared.
  std::map<std::string, std::string> after = Fields(attacker.ReadLine());
  EXPECT_EQ(after["value"], after["thread_pid"]);
  EXPECT_EQ(after["processes"], "1");
  EXPECT_EQ(after["threads"], "1");
  EXPECT_THAT(attacker.ReadLine(), StartsWith("exec_after_remove OK  processes=1"));
  EXPECT_EQ(attacker.Finish(), 0);
}

}  // namespace
}  // namespace procwarp::testing
