// See daemon_harness.h.
#include "tests/integration/daemon_harness.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

extern char** environ;

namespace procwarp::testing {
namespace {

std::vector<char*> CArray(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::string MakeTempDir() {
  char tmpl[] = "/tmp/procwarp-test-XXXXXX";
  char* dir = mkdtemp(tmpl);
  if (dir == nullptr) abort();
  chmod(dir, 0755);
  return dir;
}

RunResult RunProgram(const std::vector<std::string>& argv, int uid, int gid,
                     const std::vector<std::string>& extra_env) {
  RunResult result;
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return result;
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  auto cargv = CArray(argv);
  auto cenv = CArray(env);
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec: the parent has threads.
    dup2(out[1], 1);
    if (gid >= 0 && (setgroups(0, nullptr) != 0 || setgid(gid) != 0)) _exit(126);
    if (uid >= 0 && setuid(uid) != 0) _exit(126);
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  close(out[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof(buf))) > 0) result.out.append(buf, n);
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = ExitCodeOf(status);
  return result;
}

std::vector<std::string> PeerCommand(const std::string& peer, const std::string& socket,
                                     int uid, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {RunfilePath("tests/integration/" + peer), "--socket", socket,
                                   "--uid", absl::StrCat(uid), "--gid", absl::StrCat(uid)};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

RunResult RunCliAs(int uid, int gid, const std::string& dir,
                   const std::string& socket, const std::string& command) {
  const std::string cli = dir + "/procwarp";
  if (access(cli.c_str(), X_OK) != 0) {
    std::error_code ec;
    std::filesystem::copy_file(RunfilePath("client/cli/procwarp"), cli, ec);
    chmod(cli.c_str(), 0755);
  }
  return RunProgram({"/bin/sh", "-c",
                     absl::StrCat("cd ", dir, " && ", cli, " --socket ", socket,
                                  " ", command, " 2>&1")},
                    uid, gid);
}

DaemonHarness::Options DaemonHarness::Options::WithAgent() {
  Options options;
  options.flags = {"--agent_path", RunfilePath("agent/procwarp-agent")};
  return options;
}

absl::StatusOr<std::unique_ptr<DaemonHarness>> DaemonHarness::Start(
    Options options) {
  std::unique_ptr<DaemonHarness> h(new DaemonHarness());
  h->own_dir_ = options.dir.empty();
  h->dir_ = h->own_dir_ ? MakeTempDir() : options.dir;
  h->socket_path_ = h->dir_ + "/procwarpd.sock";
  std::string notify_path = h->dir_ + "/notify.sock";
  unlink(notify_path.c_str());

  int notify = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, notify_path.c_str(), sizeof(addr.sun_path) - 1);
  if (bind(notify, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::InternalError("bind notify socket");
  }

  std::vector<std::string> argv = {RunfilePath(options.binary), "--socket",
                                   h->socket_path_, "--socket_mode",
                                   options.socket_mode};
  argv.insert(argv.end(), options.flags.begin(), options.flags.end());
  argv.insert(argv.begin(), options.wrapper.begin(), options.wrapper.end());
  std::vector<std::string> env = {"NOTIFY_SOCKET=" + notify_path,
                                  "PATH=/usr/bin:/bin"};
  // Sanitizer and gRPC logging settings reach the daemon too.
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                           "GRPC_VERBOSITY", "GRPC_TRACE"}) {
    if (const char* v = getenv(name)) env.push_back(absl::StrCat(name, "=", v));
  }
  auto cargv = CArray(argv);
  auto cenv = CArray(env);
  if (posix_spawn(&h->pid_, cargv[0], nullptr, nullptr, cargv.data(),
                  cenv.data()) != 0) {
    close(notify);
    return absl::InternalError("posix_spawn procwarpd");
  }
  h->pidfd_ = syscall(SYS_pidfd_open, h->pid_, 0);
  h->daemon_pid_ = h->pid_;

  // Wait for READY=1, or for the daemon to die first.
  for (;;) {
    pollfd fds[2] = {{notify, POLLIN, 0}, {h->pidfd_, POLLIN, 0}};
    if (poll(fds, 2, 30000) <= 0) {
      close(notify);
      return absl::DeadlineExceededError("procwarpd did not become ready in 30s");
    }
    if (fds[1].revents) {
      close(notify);
      int status = 0;
      waitpid(h->pid_, &status, 0);
      h->pid_ = -1;
      return absl::InternalError(
          absl::StrCat("procwarpd exited during start-up: ", ExitCodeOf(status)));
    }
    char msg[4096];
    ssize_t n = recv(notify, msg, sizeof(msg) - 1, 0);
    if (n > 0) {
      msg[n] = '\0';
      if (const char* main_pid = strstr(msg, "MAINPID=")) {
        h->daemon_pid_ = atoi(main_pid + strlen("MAINPID="));
      }
      if (strstr(msg, "READY=1") != nullptr) break;
    }
  }
  close(notify);
  return h;
}

DaemonHarness::~DaemonHarness() {
  // A clean SIGTERM shutdown exits 0; anything else (a crash, a sanitizer or
  // leak report at exit) fails the test that used this daemon.
  if (pid_ > 0) {
    int code = Stop();
    EXPECT_EQ(code, 0) << "procwarpd did not exit cleanly on SIGTERM";
  }
  if (pidfd_ >= 0) close(pidfd_);
  if (own_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void DaemonHarness::SignalDaemonAndWait(int signal) {
  int fd = syscall(SYS_pidfd_open, daemon_pid_, 0);
  ASSERT_GE(fd, 0) << "the daemon is already gone";
  syscall(SYS_pidfd_send_signal, fd, signal, nullptr, 0);
  pollfd pfd{fd, POLLIN, 0};
  poll(&pfd, 1, -1);
  close(fd);
  if (daemon_pid_ == pid_) {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
}

int DaemonHarness::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return ExitCodeOf(status);
}

std::shared_ptr<grpc::Channel> DaemonHarness::NewChannel() const {
  return NewUnixChannel(socket_path_);
}

std::unique_ptr<procwarp::v1::Processes::Stub> DaemonHarness::Processes() const {
  return procwarp::v1::Processes::NewStub(NewChannel());
}

std::unique_ptr<procwarp::v1::Admin::Stub> DaemonHarness::Admin() const {
  return procwarp::v1::Admin::NewStub(NewChannel());
}

int DaemonHarness::CountFds() const {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", daemon_pid_, "/fd"))) {
    (void)entry;
    ++n;
  }
  return n;
}

int DaemonHarness::AwaitFdsAtMost(int baseline, absl::Duration timeout) const {
  const absl::Time until = absl::Now() + timeout;
  int fds = CountFds();
  while (fds > baseline && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(50));
    fds = CountFds();
  }
  return fds;
}

long DaemonHarness::RssKb() const {
  std::ifstream status(absl::StrCat("/proc/", daemon_pid_, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

procwarp::v1::SpawnRequest PipedSpawn(const std::vector<std::string>& argv) {
  procwarp::v1::SpawnRequest request;
  for (const auto& a : argv) request.add_argv(a);
  request.mutable_stdout()->set_kind(procwarp::v1::STDIO_KIND_PIPE);
  request.mutable_stderr()->set_kind(procwarp::v1::STDIO_KIND_PIPE);
  return request;
}

AttachOutcome AttachAndCollect(procwarp::v1::Processes::Stub* stub,
                               const std::string& id,
                               const std::string& stdin_data,
                               bool close_stdin) {
  AttachOutcome outcome;
  auto ctx = Ctx();
  auto stream = stub->Attach(ctx.get());
  procwarp::v1::AttachRequest first;
  first.set_id(id);
  first.set_stdin(stdin_data);
  first.set_close_stdin(close_stdin);
  stream->Write(first);
  procwarp::v1::AttachResponse response;
  while (stream->Read(&response)) {
    if (response.has_output()) {
      const auto& chunk = response.output();
      outcome.merged += chunk.data();
      (chunk.stream() == procwarp::v1::OUTPUT_STREAM_STDERR
           ? outcome.stderr_data
           : outcome.stdout_data) += chunk.data();
    } else if (response.has_exit()) {
      outcome.exited = true;
      outcome.exit = response.exit();
      stream->WritesDone();
    }
  }
  outcome.status = stream->Finish();
  return outcome;
}

}  // namespace procwarp::testing
