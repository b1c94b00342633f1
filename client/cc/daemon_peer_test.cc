// Who the C++ client talks to: the trust rule for the daemon's socket
// (SO_PEERCRED), a fake daemon run by another uid (refused before a single
// byte is sent), the $PROCWARP_DAEMON_UID opt-in, and the fd side socket
// (only next to the main socket, only served by the same uid).
#include "client/cc/daemon_peer.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/cc/client.h"
#include "client/cc/thread.h"
#include "common/fd_passing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"

extern char** environ;

namespace procwarp {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The uid the "other user" runs as.
constexpr uid_t kNobody = 65534;

std::string RunfilePath(const std::string& relative) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* workspace = getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) return relative;
  return absl::StrCat(srcdir, "/", workspace ? workspace : "procwarp", "/",
                      relative);
}

// A fresh directory under /tmp (unix socket paths must stay under 108
// bytes) that every uid may create sockets in, removed when destroyed.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/procwarp_peer_test.XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
    EXPECT_FALSE(path_.empty());
    EXPECT_EQ(chmod(path_.c_str(), 01777), 0);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// client/cc/testing/foreign_listener: a socket served by another uid, which
// reports how many bytes its first client sent.
class ForeignListener {
 public:
  // Starts it on `path` as `uid` and waits until it listens.
  ForeignListener(const std::string& path, uid_t uid) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    const std::string program = RunfilePath("client/cc/foreign_listener");
    const std::string uid_text = absl::StrCat(uid);
    char* argv[] = {const_cast<char*>(program.c_str()),
                    const_cast<char*>(path.c_str()),
                    const_cast<char*>(uid_text.c_str()), nullptr};
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv, environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    output_ = fdopen(out[0], "r");
    listening_ = ReadLine() == "listening";
  }
  ~ForeignListener() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (output_ != nullptr) fclose(output_);
  }

  bool listening() const { return listening_; }

  // "received N" once the first client has sent something or closed. Call
  // only once a client has certainly connected.
  std::string Result() {
    std::string line = ReadLine();
    if (pid_ > 0 && waitpid(pid_, nullptr, 0) == pid_) pid_ = -1;
    return line;
  }

 private:
  std::string ReadLine() {
    if (output_ == nullptr) return "";
    char* line = nullptr;
    size_t capacity = 0;
    const ssize_t n = getline(&line, &capacity, output_);
    std::string text = n > 0 ? std::string(line, n) : "";
    free(line);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  pid_t pid_ = -1;
  FILE* output_ = nullptr;
  bool listening_ = false;
};

// A caller whose real, effective and saved uids are all `uid`.
DaemonTrust Caller(uid_t uid, std::optional<uid_t> daemon_uid = std::nullopt) {
  return {.ruid = uid, .euid = uid, .suid = uid, .daemon_uid = daemon_uid};
}

// ---------------------------------------------------------------------------
// The rule

TEST(CheckDaemonPeerTest, RootIsTrustedByEveryone) {
  const PeerCredentials root = {.pid = 1, .uid = 0};
  EXPECT_TRUE(CheckDaemonPeer(root, Caller(0), "/s").ok());
  EXPECT_TRUE(CheckDaemonPeer(root, Caller(1000), "/s").ok());
  EXPECT_TRUE(
      CheckDaemonPeer(root, {.ruid = 1000, .euid = 0, .suid = 0}, "/s").ok());
}

TEST(CheckDaemonPeerTest, TheCallersOwnDaemonIsTrusted) {
  EXPECT_TRUE(CheckDaemonPeer({.uid = 1000}, Caller(1000), "/s").ok());
}

TEST(CheckDaemonPeerTest, AnotherUsersDaemonIsRefusedWithTheReason) {
  const PeerCredentials other = {.pid = getpid(), .uid = 1000, .gid = 1000};
  const absl::Status refused = CheckDaemonPeer(other, Caller(0), "/x/y");
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(refused.message()),
              StartsWith(absl::StrCat("the socket /x/y is served by uid 1000 "
                                      "(pid ",
                                      getpid(), ", comm ")));
  EXPECT_THAT(refused.message(),
              HasSubstr("), not by root or you; refusing to send your "
                        "request; set PROCWARP_DAEMON_UID=1000 if you trust "
                        "it"));
  // Another non-root user is no better.
  EXPECT_EQ(CheckDaemonPeer(other, Caller(1001), "/x/y").code(),
            absl::StatusCode::kPermissionDenied);
  // A peer in a pid namespace we cannot see has pid 0.
  EXPECT_THAT(CheckDaemonPeer({.uid = 1000}, Caller(0), "/s").message(),
              HasSubstr("served by uid 1000 (pid unknown), not by root"));
}

TEST(CheckDaemonPeerTest, ASetuidProgramDoesNotTrustItsInvokersDaemon) {
  // Run by uid 1000, setuid root: a daemon of uid 1000 would receive what a
  // root process sends.
  const DaemonTrust setuid_root = {.ruid = 1000, .euid = 0, .suid = 0};
  const absl::Status refused =
      CheckDaemonPeer({.uid = 1000}, setuid_root, "/s");
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.message(),
              HasSubstr("not by root (this process's real, effective and "
                        "saved uids differ: 1000/0/0, so it trusts none of "
                        "them)"));
  // Temporarily dropped privileges (euid 1000 of a root process) neither.
  EXPECT_FALSE(CheckDaemonPeer({.uid = 1000},
                               {.ruid = 0, .euid = 1000, .suid = 0}, "/s")
                   .ok());
}

TEST(CheckDaemonPeerTest, AConfiguredDaemonUidIsTrusted) {
  EXPECT_TRUE(
      CheckDaemonPeer({.uid = 999}, Caller(0, /*daemon_uid=*/999), "/s").ok());
  const absl::Status refused =
      CheckDaemonPeer({.uid = 1000}, Caller(0, 999), "/s");
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.message(),
              HasSubstr("not by root, you or the trusted daemon uid 999"));
}

TEST(ParseUidTest, DecimalUidsOnly) {
  EXPECT_EQ(ParseUid("0", "X").value(), 0);
  EXPECT_EQ(ParseUid("65534", "X").value(), 65534);
  EXPECT_EQ(ParseUid("4294967294", "X").value(), 4294967294u);
  for (const char* bad : {"", "abc", "-1", "+5", " 5", "5 ", "0x10",
                          "4294967295", "99999999999999999999"}) {
    const absl::StatusOr<uid_t> uid = ParseUid(bad, "PROCWARP_DAEMON_UID");
    EXPECT_EQ(uid.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(uid.status().message()), StartsWith("PROCWARP_DAEMON_UID='"));
  }
}

TEST(DaemonTrustTest, ReadsTheEnvironmentUnlessTold) {
  ASSERT_EQ(setenv("PROCWARP_DAEMON_UID", "1234", 1), 0);
  EXPECT_EQ(DaemonTrust::ForThisProcess(std::nullopt)->daemon_uid, 1234);
  EXPECT_EQ(DaemonTrust::ForThisProcess(77)->daemon_uid, 77);
  ASSERT_EQ(setenv("PROCWARP_DAEMON_UID", "nobody", 1), 0);
  EXPECT_EQ(DaemonTrust::ForThisProcess(std::nullopt).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_EQ(unsetenv("PROCWARP_DAEMON_UID"), 0);
  absl::StatusOr<DaemonTrust> trust = DaemonTrust::ForThisProcess(std::nullopt);
  ASSERT_TRUE(trust.ok());
  EXPECT_FALSE(trust->daemon_uid.has_value());
  EXPECT_EQ(trust->euid, geteuid());
  EXPECT_EQ(trust->ruid, getuid());
}

// ---------------------------------------------------------------------------
// A fake daemon run by another uid

class ForeignDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0) << "needs root to run a listener as uid 65534";
    listener_ = std::make_unique<ForeignListener>(socket_path_, kNobody);
    ASSERT_TRUE(listener_->listening());
  }

  TempDir dir_;
  const std::string socket_path_ = dir_.path() + "/procwarpd.sock";
  std::unique_ptr<ForeignListener> listener_;
};

TEST_F(ForeignDaemonTest, ConnectRefusesItAndSendsNothing) {
  absl::StatusOr<Client> client = Client::Connect(socket_path_);
  ASSERT_EQ(client.status().code(), absl::StatusCode::kPermissionDenied)
      << client.status();
  EXPECT_THAT(std::string(client.status().message()),
              StartsWith(absl::StrCat("the socket ", socket_path_,
                                      " is served by uid 65534 (pid ")));
  EXPECT_THAT(client.status().message(),
              HasSubstr("comm foreign_listene), not by root or you; refusing "
                        "to send your request; set PROCWARP_DAEMON_UID=65534 "
                        "if you trust it"));
  EXPECT_EQ(listener_->Result(), "received 0");
}

TEST_F(ForeignDaemonTest, ProcwarpSocketPointingAtItIsRefusedToo) {
  ASSERT_EQ(setenv("PROCWARP_SOCKET", socket_path_.c_str(), 1), 0);
  absl::StatusOr<Client> client = Client::Connect();
  unsetenv("PROCWARP_SOCKET");
  EXPECT_EQ(client.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(listener_->Result(), "received 0");
}

// The opt-in works: a caller that trusts uid 65534 talks to it (this fake
// answers no gRPC, so Connect then fails, after sending its first bytes).
TEST_F(ForeignDaemonTest, TrustingItsUidLetsTheClientTalkToIt) {
  absl::StatusOr<Client> client =
      Client::Connect(ConnectOptions{.socket_path = socket_path_,
                                     .daemon_uid = kNobody});
  EXPECT_NE(client.status().code(), absl::StatusCode::kPermissionDenied)
      << client.status();
  EXPECT_NE(listener_->Result(), "received 0");
}

TEST_F(ForeignDaemonTest, TrustingItThroughTheEnvironmentToo) {
  ASSERT_EQ(setenv("PROCWARP_DAEMON_UID", "65534", 1), 0);
  absl::StatusOr<Client> client = Client::Connect(socket_path_);
  unsetenv("PROCWARP_DAEMON_UID");
  EXPECT_NE(client.status().code(), absl::StatusCode::kPermissionDenied)
      << client.status();
  EXPECT_NE(listener_->Result(), "received 0");
}

// ---------------------------------------------------------------------------
// The fd side socket

TEST(SideSocketPathTest, TheMainSocketsPathPlusFds) {
  EXPECT_EQ(SideSocketPath("/run/procwarp/procwarpd.sock",
                           "/run/procwarp/procwarpd.sock.fds")
                .value(),
            "/run/procwarp/procwarpd.sock.fds");
}

TEST(SideSocketPathTest, AnotherSpellingOfTheSameDirectoryIsFine) {
  TempDir dir;
  const std::string real = dir.path() + "/real";
  const std::string link = dir.path() + "/link";
  ASSERT_EQ(mkdir(real.c_str(), 0755), 0);
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
  const std::string main = real + "/procwarpd.sock";
  // The path we connected to wins: it is the one connected to.
  EXPECT_EQ(SideSocketPath(main, link + "/procwarpd.sock.fds").value(),
            main + ".fds");
  EXPECT_EQ(SideSocketPath(main, real + "/./procwarpd.sock.fds").value(),
            main + ".fds");
  EXPECT_EQ(SideSocketPath(link + "/procwarpd.sock", main + ".fds").value(),
            link + "/procwarpd.sock.fds");
}

TEST(SideSocketPathTest, AnywhereElseIsRefused) {
  TempDir dir;
  const std::string other = dir.path() + "/other";
  ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
  const std::string main = dir.path() + "/procwarpd.sock";
  for (const std::string& reported :
       {other + "/procwarpd.sock.fds", dir.path() + "/procwarpd.sock",
        dir.path() + "/procwarpd.sock.fds2", dir.path() + "/x.sock.fds",
        dir.path() + "/procwarpd.sock.fds/", std::string("procwarpd.sock.fds"),
        std::string("/run/systemd/private"), std::string("")}) {
    const absl::StatusOr<std::string> path = SideSocketPath(main, reported);
    EXPECT_EQ(path.status().code(), absl::StatusCode::kPermissionDenied)
        << reported;
    EXPECT_THAT(path.status().message(),
                HasSubstr(absl::StrCat("which is not next to its socket ", main,
                                       " (expected ", main, ".fds)")));
  }
}

// Just enough of a daemon for Client::Connect, CreateThread and ImportFd,
// with ImportFd naming `side_path` as the side socket.
class FakeDaemon {
 public:
  explicit FakeDaemon(const std::string& socket_path) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path,
                             grpc::InsecureServerCredentials());
    builder.RegisterService(&admin_);
    builder.RegisterService(&threads_);
    builder.RegisterService(&files_);
    server_ = builder.BuildAndStart();
  }
  ~FakeDaemon() {
    if (server_ != nullptr) server_->Shutdown();
  }
  bool ok() const { return server_ != nullptr; }
  void set_side_path(const std::string& path) { files_.side_path = path; }

  static constexpr char kToken[] = "0123456789abcdef0123456789abcdef";

 private:
  class Admin final : public v1::Admin::Service {
    grpc::Status GetVersion(grpc::ServerContext*, const v1::GetVersionRequest*,
                            v1::GetVersionResponse* response) override {
      response->set_version("fake");
      return grpc::Status::OK;
    }
  };
  class Threads final : public v1::Threads::Service {
    grpc::Status CreateThread(grpc::ServerContext*,
                              const v1::CreateThreadRequest*,
                              v1::CreateThreadResponse* response) override {
      response->mutable_thread()->set_id("t1");
      response->mutable_thread()->set_persistent(true);
      return grpc::Status::OK;
    }
  };
  struct Files final : public v1::Files::Service {
    grpc::Status ImportFd(grpc::ServerContext*, const v1::ImportFdRequest*,
                          v1::ImportFdResponse* response) override {
      response->set_token(kToken);
      response->set_side_socket_path(side_path);
      return grpc::Status::OK;
    }
    std::string side_path;
  };

  Admin admin_;
  Threads threads_;
  Files files_;
  std::unique_ptr<grpc::Server> server_;
};

// ---------------------------------------------------------------------------
// One checked connection per Client

int OpenFdCount() {
  int count = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/self/fd")) {
    ++count;
  }
  return count;
}

// gRPC owns the checked fd from Connect on and closes it with the channel.
// (The daemon's side of the last connection may still be closing, so the
// count is compared with what one leaked fd per client would give.)
TEST(OneConnectionTest, ClientsDoNotLeakTheirConnection) {
  TempDir dir;
  const std::string path = dir.path() + "/procwarpd.sock";
  FakeDaemon daemon(path);
  ASSERT_TRUE(daemon.ok());
  const int before = OpenFdCount();
  constexpr int kClients = 20;
  for (int i = 0; i < kClients; ++i) {
    absl::StatusOr<Client> client = Client::Connect(path);
    ASSERT_TRUE(client.ok()) << client.status();
  }
  EXPECT_LT(OpenFdCount(), before + kClients / 2);
}

// The channel never reconnects: after a daemon restart, the old Client
// fails (its non-persistent handles are gone with the old connection) even
// though a daemon listens at the path again; a new Connect works.
TEST(OneConnectionTest, NoSilentReconnect) {
  TempDir dir;
  const std::string path = dir.path() + "/procwarpd.sock";
  auto daemon = std::make_unique<FakeDaemon>(path);
  ASSERT_TRUE(daemon->ok());
  absl::StatusOr<Client> client = Client::Connect(path);
  ASSERT_TRUE(client.ok()) << client.status();
  daemon.reset();
  daemon = std::make_unique<FakeDaemon>(path);
  ASSERT_TRUE(daemon->ok());
  EXPECT_EQ(client->Version().status().code(), absl::StatusCode::kUnavailable);
  absl::StatusOr<Client> again = Client::Connect(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->Version().ok());
}

// A root-owned listening unix socket at `path`.
int ListenAt(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof(address.sun_path) - 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
            0);
  EXPECT_EQ(listen(fd, 4), 0);
  return fd;
}

class SideSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.ok());
    absl::StatusOr<Client> client = Client::Connect(socket_path_);
    ASSERT_TRUE(client.ok()) << client.status();
    absl::StatusOr<Thread> thread = client->CreateThread();
    ASSERT_TRUE(thread.ok()) << thread.status();
    thread_.emplace(*std::move(thread));
    ASSERT_EQ(pipe2(pipe_, O_CLOEXEC), 0);
  }
  void TearDown() override {
    close(pipe_[0]);
    close(pipe_[1]);
  }

  TempDir dir_;
  const std::string socket_path_ = dir_.path() + "/procwarpd.sock";
  FakeDaemon daemon_{socket_path_};
  std::optional<Thread> thread_;
  int pipe_[2] = {-1, -1};
};

TEST_F(SideSocketTest, ASideSocketElsewhereIsRefusedAndNeverConnected) {
  TempDir elsewhere;
  const std::string trap = elsewhere.path() + "/procwarpd.sock.fds";
  const int listener = ListenAt(trap);
  daemon_.set_side_path(trap);

  absl::StatusOr<FileDescriptor> imported = thread_->ImportFd(pipe_[1]);
  EXPECT_EQ(imported.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(imported.status().message(),
              HasSubstr(absl::StrCat("ImportFd: procwarpd named '", trap,
                                     "' as its fd side socket, which is not "
                                     "next to its socket ",
                                     socket_path_)));
  // Nobody knocked: no connection is waiting at the trap (a unix connect()
  // queues the connection before it returns, so none can still be coming).
  pollfd pending = {.fd = listener, .events = POLLIN};
  EXPECT_EQ(poll(&pending, 1, /*timeout=*/0), 0);
  close(listener);
}

TEST_F(SideSocketTest, ASideSocketServedByAnotherUidIsRefused) {
  ForeignListener foreign(socket_path_ + ".fds", kNobody);
  ASSERT_TRUE(foreign.listening());
  daemon_.set_side_path(socket_path_ + ".fds");

  absl::StatusOr<FileDescriptor> imported = thread_->ImportFd(pipe_[1]);
  EXPECT_EQ(imported.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(imported.status().message(),
              HasSubstr(absl::StrCat("ImportFd: the fd side socket ",
                                     socket_path_, ".fds is served by uid "
                                     "65534")));
  EXPECT_THAT(imported.status().message(),
              HasSubstr(absl::StrCat("not by uid 0 which serves procwarpd's "
                                     "socket ", socket_path_,
                                     "; refusing to send anything there")));
  EXPECT_EQ(foreign.Result(), "received 0");
}

// Positive control: the daemon's own side socket, named through a symlink
// to its directory, gets the token and the fd.
TEST_F(SideSocketTest, TheDaemonsOwnSideSocketWorks) {
  const std::string link = dir_.path() + "-link";
  ASSERT_EQ(symlink(dir_.path().c_str(), link.c_str()), 0);
  daemon_.set_side_path(link + "/procwarpd.sock.fds");
  const int listener = ListenAt(socket_path_ + ".fds");
  std::string token;
  bool got_fd = false;
  std::thread side([&] {
    const int connection = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    char buffer[64];
    int fd = -1;
    const ssize_t n = ReceiveWithFd(connection, buffer, sizeof(buffer), &fd);
    if (n > 0) token.assign(buffer, n);
    got_fd = fd >= 0;
    if (fd >= 0) close(fd);
    const int32_t reply = 7;
    SendWithFd(connection, &reply, sizeof(reply), -1);
    close(connection);
  });

  absl::StatusOr<FileDescriptor> imported = thread_->ImportFd(pipe_[1]);
  side.join();
  close(listener);
  unlink(link.c_str());
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->Release(), 7);
  EXPECT_EQ(token, FakeDaemon::kToken);
  EXPECT_TRUE(got_fd);
}

}  // namespace
}  // namespace procwarp
