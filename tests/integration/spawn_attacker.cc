// spawn_attacker: the caller's side of spawn_security_test. It becomes an
// unprivileged user (--uid/--gid) before gRPC starts any thread, then attacks
// the spawn window the way issue 8 describes: it makes the daemon's spawn
// child block opening a FIFO it owns as stdin and, while the spawn waits,
// tries to reach the daemon's memory and fds through that child. It also
// runs the positive controls and the limit checks as the same user.
//
//   spawn_attacker --socket S --uid U --gid G --daemon_pid P OP [ARGS...]
//   OP: blocked DIR [--userns]   then commands on stdin (see Blocked)
//       fifo_with_writer DIR | file_stdin DIR | userns_maps |
//       concurrent N DIR | exec_over_limit
//
// Output is line based ("key=value ..."), read by the test as it comes:
// the test acts as root between the steps (e.g. while the spawn is blocked).
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/peer_args.h"
#include "tests/integration/test_channel.h"

namespace {

using procwarp::testing::NewUnixChannel;
using procwarp::testing::Ctx;
using procwarp::testing::CodeName;

using procwarp::v1::Processes;
using procwarp::v1::SpawnRequest;
using procwarp::v1::SpawnResponse;

std::string socket_path;
pid_t daemon_pid = 0;

// Longest any step waits for the daemon or for the kernel to show a state.
constexpr absl::Duration kStepTimeout = absl::Seconds(20);

void Say(const std::string& line) {
  printf("%s\n", line.c_str());
  fflush(stdout);
}

// "OK" or the errno's name, for one probe.
std::string Outcome(long result) {
  if (result >= 0) return "OK";
  return strerrorname_np(errno);
}

SpawnRequest TrueWithStdinFile(const std::string& path) {
  SpawnRequest request;
  request.add_argv("/bin/true");
  request.mutable_stdin()->set_kind(procwarp::v1::STDIO_KIND_FILE);
  request.mutable_stdin()->set_path(path);
  return request;
}

// Spawns /bin/true with stdin from `path`, waits for it and removes it.
// "<CODE> exit=<code>".
std::string SpawnWaitRemove(Processes::Stub* stub, const SpawnRequest& request) {
  SpawnResponse spawned;
  grpc::Status s = stub->Spawn(Ctx(kStepTimeout).get(), request, &spawned);
  if (!s.ok()) return absl::StrCat(CodeName(s), " ", s.error_message());
  procwarp::v1::WaitRequest wait;
  wait.set_id(spawned.process().id());
  procwarp::v1::WaitResponse waited;
  s = stub->Wait(Ctx(kStepTimeout).get(), wait, &waited);
  if (!s.ok()) return absl::StrCat("wait:", CodeName(s));
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  procwarp::v1::RemoveProcessResponse removed;
  s = stub->Remove(Ctx(kStepTimeout).get(), remove, &removed);
  if (!s.ok()) return absl::StrCat("remove:", CodeName(s));
  return absl::StrCat("OK exit=", waited.process().exit_status().code());
}

// The fields of /proc/PID/status we look at; nullopt once it is gone.
struct ProcStatus {
  pid_t ppid = 0;
  uid_t uid = 0;
  std::string name;
  char state = '?';
};
std::optional<ProcStatus> ReadStatus(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  if (!in) return std::nullopt;
  ProcStatus status;
  std::string line;
  bool any = false;
  while (std::getline(in, line)) {
    any = true;
    if (line.rfind("Name:\t", 0) == 0) status.name = line.substr(6);
    if (line.rfind("State:\t", 0) == 0 && line.size() > 7) status.state = line[7];
    if (line.rfind("PPid:", 0) == 0) status.ppid = atoi(line.c_str() + 5);
    if (line.rfind("Uid:", 0) == 0) status.uid = atoi(line.c_str() + 4);
  }
  if (!any) return std::nullopt;
  return status;
}

// The names of the daemon's threads: a spawn child starts with the name of
// the thread that cloned it and keeps it until execve.
std::set<std::string> DaemonThreadNames() {
  std::set<std::string> names;
  std::string tasks = absl::StrCat("/proc/", daemon_pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return names;
  while (dirent* entry = readdir(dir)) {
    pid_t tid = atoi(entry->d_name);
    if (tid <= 0) continue;
    std::ifstream comm(absl::StrCat(tasks, "/", tid, "/comm"));
    std::string name;
    if (std::getline(comm, name)) names.insert(name);
  }
  closedir(dir);
  return names;
}

// Waits for `condition` to hold. The kernel has no event for "a process of
// mine appeared under another parent" or "a task is blocked in open()", so
// this re-checks /proc every millisecond, bounded by kStepTimeout.
template <typename F>
bool PollUntil(F condition) {
  absl::Time end = absl::Now() + kStepTimeout;
  while (absl::Now() < end) {
    if (condition()) return true;
    usleep(1000);
  }
  return condition();
}

// Pids of the daemon's children that run as us and still run the daemon's
// image (the spawn child before execve).
std::vector<pid_t> PendingSpawnChildren() {
  std::vector<pid_t> pids;
  std::set<std::string> daemon_names = DaemonThreadNames();
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    pid_t pid = atoi(entry->d_name);
    if (pid <= 0) continue;
    std::optional<ProcStatus> status = ReadStatus(pid);
    if (status && status->ppid == daemon_pid && status->uid == getuid() &&
        daemon_names.count(status->name) != 0) {
      pids.push_back(pid);
    }
  }
  closedir(proc);
  return pids;
}

// The text of a small /proc file with its column padding collapsed: lines
// joined by '|', fields by one space.
std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::StrCat("unreadable:", strerrorname_np(errno));
  std::string text((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    lines.push_back(absl::StrJoin(
        absl::StrSplit(line, ' ', absl::SkipWhitespace()), " "));
  }
  return absl::StrJoin(lines, "|");
}

// Everything a same-uid process could try to reach the memory and fds of
// `pid`, each as OK or the errno's name, plus who owns /proc/PID/fd (root
// while the process is not dumpable).
std::string Probe(pid_t pid) {
  std::string dir = absl::StrCat("/proc/", pid);
  // /proc/PID itself always shows the process's uid; its private entries
  // belong to root while the process is not dumpable.
  struct stat st {};
  stat((dir + "/fd").c_str(), &st);
  std::optional<ProcStatus> status = ReadStatus(pid);

  int mem = open((dir + "/mem").c_str(), O_RDWR | O_CLOEXEC);
  std::string mem_rw = Outcome(mem);
  if (mem >= 0) close(mem);
  mem = open((dir + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  std::string mem_ro = Outcome(mem);
  if (mem >= 0) close(mem);

  // Any remote address: permission is checked before the address is used.
  char local[8];
  iovec local_iov = {local, sizeof(local)};
  iovec remote_iov = {reinterpret_cast<void*>(0x10000), sizeof(local)};
  std::string vm_read =
      Outcome(process_vm_readv(pid, &local_iov, 1, &remote_iov, 1, 0));
  std::string vm_write =
      Outcome(process_vm_writev(pid, &local_iov, 1, &remote_iov, 1, 0));

  DIR* fds = opendir((dir + "/fd").c_str());
  std::string fd_dir = Outcome(fds == nullptr ? -1 : 0);
  if (fds != nullptr) closedir(fds);
  char target[256];
  std::string fd_link =
      Outcome(readlink((dir + "/fd/0").c_str(), target, sizeof(target)));
  std::string maps = Outcome(open((dir + "/maps").c_str(), O_RDONLY | O_CLOEXEC));
  std::string environ_file =
      Outcome(open((dir + "/environ").c_str(), O_RDONLY | O_CLOEXEC));

  int pidfd = syscall(SYS_pidfd_open, pid, 0);
  std::string getfd = "no-pidfd";
  if (pidfd >= 0) {
    long fd = syscall(SYS_pidfd_getfd, pidfd, 0, 0);
    getfd = Outcome(fd);
    if (fd >= 0) close(fd);
    close(pidfd);
  }
  std::string ptrace_seize = Outcome(ptrace(PTRACE_SEIZE, pid, 0, 0));
  return absl::StrCat(
      "probe owner=", st.st_uid, " uid=", status ? status->uid : -1,
      " image=",
      !status ? "gone"
      : DaemonThreadNames().count(status->name) ? "daemon" : status->name,
      " mem_rw=", mem_rw,
      " mem_ro=", mem_ro, " vm_read=", vm_read, " vm_write=", vm_write,
      " fd_dir=", fd_dir, " fd_link=", fd_link, " maps=", maps,
      " environ=", environ_file, " getfd=", getfd, " ptrace=", ptrace_seize);
}

// A FIFO of ours, no writer: opening it for reading blocks.
std::string MakeFifo(const std::string& dir, const std::string& name) {
  std::string path = absl::StrCat(dir, "/", name);
  unlink(path.c_str());
  if (mkfifo(path.c_str(), 0600) != 0) {
    Say(absl::StrCat("error mkfifo ", path, ": ", strerror(errno)));
    exit(1);
  }
  return path;
}

// Waits until the process behind `pidfd` has exited and its /proc entry is
// gone (reaped by the daemon: no zombie left).
bool GoneAndReaped(int pidfd, pid_t pid) {
  pollfd pfd = {pidfd, POLLIN, 0};
  if (poll(&pfd, 1, absl::ToInt64Milliseconds(kStepTimeout)) != 1) return false;
  return PollUntil([&] { return !ReadStatus(pid).has_value(); });
}

// Spawns /bin/true with stdin from a fresh FIFO and leaves it blocked, then
// reports the child, the probes and a second spawn (past a limit of 1), and
// takes one command on stdin:
//   cancel   the client cancels the blocked call
//   wait     waits for the daemon to give up (--spawn_timeout_ms)
//   stop     SIGSTOPs the child (ours to signal) first, then waits: a
//            stopped child must not hold the daemon either
//   release  opens the FIFO for writing, so the spawn completes
// and reports the call's result and whether the child is gone and reaped.
int Blocked(const std::string& dir, bool userns) {
  auto stub = Processes::NewStub(NewUnixChannel(socket_path));
  // Warm up the connection and the daemon (fds it makes once), then let the
  // test take its baseline before the attack.
  SpawnRequest warm_up;
  warm_up.add_argv("/bin/true");
  Say("warm_up " + SpawnWaitRemove(stub.get(), warm_up));
  std::string go;
  if (!std::getline(std::cin, go)) return 1;

  std::string fifo = MakeFifo(dir, "stdin-fifo");
  SpawnRequest request = TrueWithStdinFile(fifo);
  request.mutable_namespaces()->set_user(userns);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kStepTimeout));
  SpawnResponse response;
  grpc::Status result;
  std::atomic<bool> done = false;
  std::thread call([&] {
    result = stub->Spawn(&context, request, &response);
    done = true;
  });

  std::vector<pid_t> children;
  PollUntil([&] {
    children = PendingSpawnChildren();
    return !children.empty() || done;
  });
  if (children.size() != 1) {
    call.join();
    Say(absl::StrCat("error expected one pending spawn child, found ",
                     children.size(), "; the spawn returned ", CodeName(result)));
    return 1;
  }
  const pid_t child = children[0];
  int pidfd = syscall(SYS_pidfd_open, child, 0);
  std::string dir_of_child = absl::StrCat("/proc/", child);
  if (userns) {
    // The daemon writes the maps while the child waits; then it goes on to
    // block on the FIFO.
    PollUntil([&] { return !ReadSmallFile(dir_of_child + "/uid_map").empty(); });
  }
  PollUntil([&] {
    std::optional<ProcStatus> status = ReadStatus(child);
    return !status || status->state == 'S';
  });
  Say(absl::StrCat("child pid=", child));
  Say(Probe(child));
  if (userns) {
    Say(absl::StrCat("maps uid_map=[", ReadSmallFile(dir_of_child + "/uid_map"),
                     "] gid_map=[", ReadSmallFile(dir_of_child + "/gid_map"),
                     "] setgroups=[", ReadSmallFile(dir_of_child + "/setgroups"),
                     "]"));
  }
  // The blocked spawn holds this user's only slot (the test's limit is 1).
  SpawnRequest second;
  second.add_argv("/bin/true");
  SpawnResponse second_response;
  grpc::Status second_status =
      stub->Spawn(Ctx(kStepTimeout).get(), second, &second_response);
  Say(absl::StrCat("second ", CodeName(second_status), " ",
                   second_status.error_message()));
  Say("ready");

  std::string command;
  if (!std::getline(std::cin, command)) command = "cancel";
  if (command == "cancel") {
    context.TryCancel();
  } else if (command == "stop") {
    Say(absl::StrCat("stopped ", Outcome(kill(child, SIGSTOP))));
  } else if (command == "release") {
    int writer = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    call.join();
    if (writer >= 0) close(writer);
  }
  if (call.joinable()) call.join();
  Say(absl::StrCat("result ", CodeName(result), " ", result.error_message()));
  if (command != "release") {
    Say(absl::StrCat("gone=", GoneAndReaped(pidfd, child) ? 1 : 0));
    // The slot is free again once the daemon has dealt with the child; it
    // may still be on its way out of Spawn: retry the positive control a
    // bounded number of times.
    std::string after;
    PollUntil([&] {
      after = SpawnWaitRemove(stub.get(), warm_up);
      return after.rfind("RESOURCE_EXHAUSTED", 0) != 0;
    });
    Say("after " + after);
  } else {
    procwarp::v1::RemoveProcessRequest remove;
    remove.set_id(response.process().id());
    procwarp::v1::RemoveProcessResponse removed;
    procwarp::v1::WaitRequest wait;
    wait.set_id(response.process().id());
    procwarp::v1::WaitResponse waited;
    stub->Wait(Ctx(kStepTimeout).get(), wait, &waited);
    stub->Remove(Ctx(kStepTimeout).get(), remove, &removed);
  }
  close(pidfd);
  // Keep the connection until the test has looked at the daemon.
  std::getline(std::cin, command);
  return 0;
}

// Positive control: a FIFO that has a writer opens at once.
int FifoWithWriter(const std::string& dir) {
  std::string fifo = MakeFifo(dir, "writer-fifo");
  // O_RDWR opens a FIFO without waiting and counts as a writer.
  int fd = open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  auto stub = Processes::NewStub(NewUnixChannel(socket_path));
  std::string result = SpawnWaitRemove(stub.get(), TrueWithStdinFile(fifo));
  if (fd >= 0) close(fd);
  Say(result);
  return 0;
}

// Positive control: a regular file as stdin.
int FileStdin(const std::string& dir) {
  std::string path = dir + "/stdin-file";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, "data\n", 5) != 5) return 1;
  close(fd);
  auto stub = Processes::NewStub(NewUnixChannel(socket_path));
  Say(SpawnWaitRemove(stub.get(), TrueWithStdinFile(path)));
  return 0;
}

// A child in a new user namespace reports its own maps and setgroups.
int UsernsMaps() {
  auto stub = Processes::NewStub(NewUnixChannel(socket_path));
  SpawnRequest request;
  for (const char* arg : {"/bin/cat", "/proc/self/uid_map", "/proc/self/gid_map",
                          "/proc/self/setgroups"}) {
    request.add_argv(arg);
  }
  request.mutable_stdout()->set_kind(procwarp::v1::STDIO_KIND_PIPE);
  request.mutable_namespaces()->set_user(true);
  SpawnResponse spawned;
  grpc::Status s = stub->Spawn(Ctx(kStepTimeout).get(), request, &spawned);
  if (!s.ok()) {
    Say(absl::StrCat(CodeName(s), " ", s.error_message()));
    return 0;
  }
  auto ctx = Ctx(kStepTimeout);
  auto stream = stub->Attach(ctx.get());
  procwarp::v1::AttachRequest first;
  first.set_id(spawned.process().id());
  stream->Write(first);
  std::string output;
  procwarp::v1::AttachResponse r;
  while (stream->Read(&r)) {
    if (r.has_output()) output += r.output().data();
    if (r.has_exit()) stream->WritesDone();
  }
  stream->Finish();
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());
    lines.push_back(absl::StrJoin(fields, " "));
  }
  Say("OK " + absl::StrJoin(lines, "|"));
  return 0;
}

// N spawns at once, each with stdin from a FIFO without a writer, so every
// spawn that gets past the limit check stays in flight until the writer
// comes: with a limit of L exactly L may be admitted, however they
// interleave. Reports how many succeeded and how many were refused.
int Concurrent(int n, const std::string& dir) {
  std::string fifo = MakeFifo(dir, "concurrent-fifo");
  auto stub = Processes::NewStub(NewUnixChannel(socket_path));
  std::mutex mu;
  int ok = 0, exhausted = 0, other = 0;
  std::vector<std::string> ids, others;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&] {
      SpawnResponse spawned;
      grpc::Status s =
          stub->Spawn(Ctx(kStepTimeout).get(), TrueWithStdinFile(fifo), &spawned);
      std::lock_guard<std::mutex> lock(mu);
      if (s.ok()) {
        ++ok;
        ids.push_back(spawned.process().id());
      } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ++exhausted;
      } else {
        ++other;
        others.push_back(CodeName(s) + ": " + s.error_message());
      }
    });
  }
  // Every call is either answered or has a child waiting for the FIFO.
  PollUntil([&] {
    std::lock_guard<std::mutex> lock(mu);
    return exhausted + other + ok +
               static_cast<int>(PendingSpawnChildren().size()) >= n;
  });
  int writer = open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  for (auto& t : threads) t.join();
  if (writer >= 0) close(writer);
  for (const std::string& id : ids) {
    procwarp::v1::WaitRequest wait;
    wait.set_id(id);
    procwarp::v1::WaitResponse waited;
    stub->Wait(Ctx(kStepTimeout).get(), wait, &waited);
    procwarp::v1::RemoveProcessRequest remove;
    remove.set_id(id);
    procwarp::v1::RemoveProcessResponse removed;
    stub->Remove(Ctx(kStepTimeout).get(), remove, &removed);
  }
  Say(absl::StrCat("ok=", ok, " exhausted=", exhausted, " other=", other, " ",
                   absl::StrJoin(others, "; ")));
  return 0;
}

// With a process limit of 1 and one managed process already: Exec on a
// thread must be refused before the execve (the thread stays usable), and
// work once the slot is free.
int ExecOverLimit() {
  auto channel = NewUnixChannel(socket_path);
  auto stub = Processes::NewStub(channel);
  auto threads = procwarp::v1::Threads::NewStub(channel);
  procwarp::v1::CreateThreadResponse created;
  grpc::Status s =
      threads->CreateThread(Ctx(kStepTimeout).get(), {}, &created);
  if (!s.ok()) {
    Say(absl::StrCat("error create thread: ", CodeName(s), " ", s.error_message()));
    return 1;
  }
  const std::string thread_id = created.thread().id();
  SpawnRequest sleeper;
  sleeper.add_argv("/bin/true");
  SpawnResponse spawned;
  s = stub->Spawn(Ctx(kStepTimeout).get(), sleeper, &spawned);
  Say(absl::StrCat("spawn ", CodeName(s)));

  procwarp::v1::ExecRequest exec;
  exec.set_thread_id(thread_id);
  exec.add_argv("/bin/true");
  procwarp::v1::ExecResponse executed;
  s = threads->Exec(Ctx(kStepTimeout).get(), exec, &executed);
  Say(absl::StrCat("exec ", CodeName(s), " ", s.error_message()));

  // The refused thread is still there and still works.
  procwarp::v1::SyscallRequest getpid;
  getpid.set_thread_id(thread_id);
  getpid.mutable_syscall()->set_number(SYS_getpid);
  procwarp::v1::SyscallResponse pid;
  s = threads->Syscall(Ctx(kStepTimeout).get(), getpid, &pid);
  procwarp::v1::ListProcessesResponse listed;
  stub->List(Ctx(kStepTimeout).get(), {}, &listed);
  procwarp::v1::ListThreadsResponse thread_list;
  threads->ListThreads(Ctx(kStepTimeout).get(), {}, &thread_list);
  Say(absl::StrCat("thread_syscall ", CodeName(s), " value=", pid.result().value(),
                   " thread_pid=", created.thread().pid(),
                   " processes=", listed.processes_size(),
                   " threads=", thread_list.threads_size()));

  // Free the slot: the same Exec now works.
  procwarp::v1::WaitRequest wait;
  wait.set_id(spawned.process().id());
  procwarp::v1::WaitResponse waited;
  stub->Wait(Ctx(kStepTimeout).get(), wait, &waited);
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  procwarp::v1::RemoveProcessResponse removed;
  stub->Remove(Ctx(kStepTimeout).get(), remove, &removed);
  s = threads->Exec(Ctx(kStepTimeout).get(), exec, &executed);
  listed.Clear();
  stub->List(Ctx(kStepTimeout).get(), {}, &listed);
  Say(absl::StrCat("exec_after_remove ", CodeName(s), " ", s.error_message(),
                   " processes=", listed.processes_size()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Become the caller before gRPC makes any thread.
  procwarp::testing::PeerArgs peer =
      procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  socket_path = peer.socket_path;
  if (peer.flags.contains("daemon_pid")) {
    daemon_pid = atoi(peer.flags["daemon_pid"].c_str());
  }
  const std::string& op = peer.op;
  const std::vector<std::string>& rest = peer.rest;

  if (op == "blocked" && !rest.empty()) {
    return Blocked(rest[0], rest.size() > 1 && rest[1] == "--userns");
  }
  if (op == "fifo_with_writer" && !rest.empty()) return FifoWithWriter(rest[0]);
  if (op == "file_stdin" && !rest.empty()) return FileStdin(rest[0]);
  if (op == "userns_maps") return UsernsMaps();
  if (op == "concurrent" && rest.size() > 1) {
    return Concurrent(atoi(rest[0].c_str()), rest[1]);
  }
  if (op == "exec_over_limit") return ExecOverLimit();
  fprintf(stderr, "unknown op %s\n", op.c_str());
  return 2;
}
