// The authorisation matrix: every RPC the daemon serves × every kind of
// caller, each a real call against a real daemon, on real handles made by
// their owner (uid 65534). The RPCs are not listed by hand: the test asks
// the daemon itself (gRPC server reflection) for every service and method it
// registers, so an RPC added without an entry in kMatrix below fails the
// test ("no entry"), as does an entry for an RPC that is gone.
//
// Callers (docs/security.md, "Identities"):
//   owner  uid 65534, who made the handles
//   other  uid 60001, another non-root user
//   admin  uid 60002, a member of the admin group (not root)
//   root   uid 0
// and remote callers over mutual TLS (docs/remote.md), known to the daemon
// only by their client certificate's mapping:
//   remote-owner  a certificate mapped to uid 65534: the owner's column
//   remote-admin  a certificate mapped to the admin role: root's column
//   unmapped      a certificate of the CA that maps to nothing:
//                 UNAUTHENTICATED for every RPC (CANCELLED for reflection)
// A mapped remote caller gets exactly what the local identity it maps to
// gets, except FAILED_PRECONDITION for the RPCs that only work locally
// (LocalOnlyMethods). Their expectations are derived from the local columns
// (RemoteExpected), so an entry lists only the local ones.
//
// Each caller gets fresh handles (calls that end a handle run last), and matrix_peer makes its calls after dropping to its uid.
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <optional>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "proto/grpc/health/v1/health.pb.h"
#include "proto/procwarp/exec/v1/exec.pb.h"
#include "proto/procwarp/snapshots/v1/snapshots.pb.h"
#include "proto/procwarp/v1/admin.pb.h"
#include "proto/procwarp/v1/files.pb.h"
#include "proto/procwarp/v1/memory.pb.h"
#include "proto/procwarp/v1/processes.pb.h"
#include "proto/procwarp/v1/threads.pb.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/tls_harness.h"
#include "tests/integration/protos/reflection.grpc.pb.h"

namespace procwarp::testing {
namespace {

namespace v1 = procwarp::v1;
using grpc::StatusCode;

constexpr char kAdminGroup[] = "staff";

enum Caller { kOwner, kOther, kAdmin, kRoot, kCallers };
constexpr const char* kCallerNames[] = {"owner", "other", "admin", "root"};

struct CallerSpec {
  int uid;
  std::vector<gid_t> groups;  // the first is the primary group
};

// Remote callers: matrix_peer over mutual TLS with client certificate
// `name`, made by deploy/tls/procwarp-tls.sh with `mapping`.
struct RemoteCaller {
  const char* name;
  std::vector<std::string> mapping;
  std::optional<Caller> maps_to;  // none: the certificate maps to nothing
};
const std::vector<RemoteCaller>& RemoteCallers() {
  static const auto* callers = new std::vector<RemoteCaller>{
      {"remote-owner", {"--uid", "65534"}, kOwner},
      {"remote-admin", {"--admin"}, kRoot},
      {"unmapped", {"--unmapped"}, std::nullopt},
  };
  return *callers;
}

// RPCs that act on the caller's own address space or pass fds over the unix
// socket: a remote caller is told to use the streaming alternative
// (RequireLocal, daemon/server/caller_context.h) before anything else.
const std::set<std::string>& LocalOnlyMethods() {
  static const auto* methods = new std::set<std::string>{
      "/procwarp.v1.Memory/ReadToClient", "/procwarp.v1.Memory/WriteFromClient",
      "/procwarp.v1.Files/ExportFd", "/procwarp.v1.Files/ImportFd"};
  return *methods;
}

// The owner's handles, as matrix_peer's setup prints them.
struct Handles {
  std::string running;  // a process that runs (sleep), stdin a pipe
  std::string done;     // a process that has exited
  std::string thread;   // a persistent thread, holding `pointer`
  std::string thread2;  // another persistent thread
  std::string pointer;  // 4096 bytes in `thread`
  // Root's processes that procwarpd did not spawn (started by the test):
  // one to attach to, one for Exec's calls.
  int root_attach_pid = 0;
  int root_call_pid = 0;
  // One more for CreateThread's attach origin (an attachment lasts to the
  // end of its row, and a process has one tracer).
  int root_create_attach_pid = 0;
};

// Expected status code per caller.
using Codes = std::array<StatusCode, kCallers>;

// The answer of a call its caller may make (`allowed`), and NOT_FOUND for
// the other user: another identity's handles do not exist for it.
Codes OwnerOrAdmin(StatusCode allowed = StatusCode::OK) {
  return {allowed, StatusCode::NOT_FOUND, allowed, allowed};
}
// Every caller gets the same answer (calls that name no handle).
Codes Everyone(StatusCode code = StatusCode::OK) { return {code, code, code, code}; }
// Only root and admins: PERMISSION_DENIED for users, even the owner.
// `admitted` is what root and admins get.
Codes AdminsOnly(StatusCode admitted = StatusCode::OK) {
  return {StatusCode::PERMISSION_DENIED, StatusCode::PERMISSION_DENIED, admitted,
          admitted};
}

enum Phase { kUses = 0, kEndsPart = 1, kEndsHandle = 2 };

// A stream that stays open until the deadline (Events, Watch): allowed.
constexpr StatusCode kStaysOpen = StatusCode::DEADLINE_EXCEEDED;

struct Entry {
  std::string method;  // "/package.Service/Method"
  std::string label;   // tells variants of one method apart
  // The request messages (one for unary calls).
  std::function<std::vector<std::string>(const Handles&)> requests;
  Codes expected;
  // When the call runs: calls that end a handle come after those that use
  // it (kUses, then kEndsPart: an fd, memory; then kEndsHandle: a thread, a
  // process).
  int phase = 0;
  int deadline_ms = 20000;
};

template <typename Message>
std::string Bytes(const Message& m) {
  return m.SerializeAsString();
}

// One request built by `fill`.
template <typename Message>
std::function<std::vector<std::string>(const Handles&)> One(
    std::function<void(const Handles&, Message*)> fill) {
  return [fill](const Handles& h) {
    Message m;
    fill(h, &m);
    return std::vector<std::string>{Bytes(m)};
  };
}

v1::SpawnRequest TrueSpawn() {
  v1::SpawnRequest r;
  r.add_argv("/bin/true");
  return r;
}

// THE MATRIX. One entry per RPC (a few have variants); every RPC the daemon
// registers must appear here.
const std::vector<Entry>& Matrix() {
  static const auto* matrix = new std::vector<Entry>{
      // Admin
      {"/procwarp.v1.Admin/GetVersion", "", One<v1::GetVersionRequest>([](auto&, auto*) {}),
       Everyone()},
      {"/procwarp.v1.Admin/GetStatus", "", One<v1::GetStatusRequest>([](auto&, auto*) {}),
       Everyone()},
      // Health and reflection: anyone may ask.
      {"/grpc.health.v1.Health/Check", "",
       One<grpc::health::v1::HealthCheckRequest>([](auto&, auto*) {}), Everyone()},
      {"/grpc.health.v1.Health/Watch", "",
       One<grpc::health::v1::HealthCheckRequest>([](auto&, auto*) {}),
       Everyone(kStaysOpen), kUses, 500},
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "",
       One<grpc::reflection::v1alpha::ServerReflectionRequest>(
           [](auto&, auto* r) { r->set_list_services(""); }),
       Everyone()},

      // Processes
      {"/procwarp.v1.Processes/Spawn", "",
       One<v1::SpawnRequest>([](auto&, auto* r) { *r = TrueSpawn(); }), Everyone()},
      {"/procwarp.v1.Processes/Spawn", "as_owner_uid",
       One<v1::SpawnRequest>([](auto&, auto* r) {
         *r = TrueSpawn();
         r->set_uid(65534);
         r->set_gid(65534);
       }),
       AdminsOnly()},
      {"/procwarp.v1.Processes/Wait", "",
       One<v1::WaitRequest>([](auto& h, auto* r) { r->set_id(h.done); }), OwnerOrAdmin()},
      {"/procwarp.v1.Processes/Signal", "",
       One<v1::SignalRequest>([](auto& h, auto* r) {
         r->set_id(h.running);
         r->set_signal(0);  // a probe: allowed callers learn it runs
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Processes/Get", "",
       One<v1::GetProcessRequest>([](auto& h, auto* r) { r->set_id(h.running); }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Processes/List", "", One<v1::ListProcessesRequest>([](auto&, auto*) {}),
       Everyone()},
      {"/procwarp.v1.Processes/List", "all",
       One<v1::ListProcessesRequest>([](auto&, auto* r) { r->set_all(true); }), AdminsOnly()},
      {"/procwarp.v1.Processes/Remove", "",
       One<v1::RemoveProcessRequest>([](auto& h, auto* r) { r->set_id(h.done); }),
       OwnerOrAdmin(), kEndsHandle},
      {"/procwarp.v1.Processes/Attach", "",
       One<v1::AttachRequest>([](auto& h, auto* r) {
         r->set_id(h.done);  // replays its output and exit, then ends
         r->set_close_stdin(true);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Processes/ResizePty", "",
       One<v1::ResizePtyRequest>([](auto& h, auto* r) {
         r->set_id(h.running);
         r->mutable_size()->set_rows(24);
         r->mutable_size()->set_cols(80);
       }),
       // It has no pty: the owner learns that, the other user nothing.
       OwnerOrAdmin(StatusCode::FAILED_PRECONDITION)},
      {"/procwarp.v1.Processes/Events", "", One<v1::EventsRequest>([](auto&, auto*) {}),
       Everyone(kStaysOpen), kUses, 500},

      // Threads
      {"/procwarp.v1.Threads/CreateThread", "", One<v1::CreateThreadRequest>([](auto&, auto*) {}),
       Everyone()},
      {"/procwarp.v1.Threads/CreateThread", "child_of_owners",
       One<v1::CreateThreadRequest>(
           [](auto& h, auto* r) { r->set_parent_thread_id(h.thread2); }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Threads/CreateThread", "launch",
       One<v1::CreateThreadRequest>([](auto&, auto* r) { r->mutable_launch(); }),
       Everyone()},
      {"/procwarp.v1.Threads/CreateThread", "clone_of_owners",
       One<v1::CreateThreadRequest>([](auto& h, auto* r) {
         r->mutable_clone()->set_parent_thread_id(h.thread2);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Threads/Syscall", "",
       One<v1::SyscallRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread2);
         r->mutable_syscall()->set_number(39);  // getpid
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Threads/Execute", "",
       One<v1::ExecuteRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread2);
         r->add_syscalls()->set_number(39);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Threads/ExitThread", "",
       One<v1::ExitThreadRequest>([](auto& h, auto* r) { r->set_id(h.thread); }),
       OwnerOrAdmin(), kEndsHandle},
      {"/procwarp.v1.Threads/ListThreads", "", One<v1::ListThreadsRequest>([](auto&, auto*) {}),
       Everyone()},
      {"/procwarp.v1.Threads/ListThreads", "all",
       One<v1::ListThreadsRequest>([](auto&, auto* r) { r->set_all(true); }), AdminsOnly()},
      {"/procwarp.v1.Threads/GetThread", "",
       One<v1::GetThreadRequest>([](auto& h, auto* r) { r->set_id(h.thread2); }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Threads/Exec", "",
       One<v1::ExecRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread2);
         r->add_argv("/bin/true");
       }),
       OwnerOrAdmin(), kEndsHandle},

      // Memory
      {"/procwarp.v1.Memory/Allocate", "",
       One<v1::AllocateRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread);
         r->set_size(4096);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Memory/Read", "",
       One<v1::ReadMemoryRequest>([](auto& h, auto* r) {
         r->set_pointer_id(h.pointer);
         r->set_length(16);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Memory/ReadStream", "",
       One<v1::ReadMemoryRequest>([](auto& h, auto* r) {
         r->set_pointer_id(h.pointer);
         r->set_length(4096);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Memory/Write", "",
       One<v1::WriteMemoryRequest>([](auto& h, auto* r) {
         r->set_pointer_id(h.pointer);
         r->set_data("matrix");
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Memory/WriteStream", "",
       One<v1::WriteMemoryRequest>([](auto& h, auto* r) {
         r->set_pointer_id(h.pointer);
         r->set_offset(8);
         r->set_data("stream");
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Memory/Free", "",
       One<v1::FreeRequest>([](auto& h, auto* r) { r->set_pointer_id(h.pointer); }),
       OwnerOrAdmin(), kEndsPart},
      {"/procwarp.v1.Memory/Maps", "",
       One<v1::MapsRequest>([](auto& h, auto* r) { r->set_thread_id(h.thread); }),
       OwnerOrAdmin()},
      // Length 0: the whole path up to the copy, which needs the client's
      // memory within the thread's reach (memory_direct_test covers that).
      {"/procwarp.v1.Memory/ReadToClient", "",
       One<v1::DirectMemoryRequest>([](auto& h, auto* r) { r->set_pointer_id(h.pointer); }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Memory/WriteFromClient", "",
       One<v1::DirectMemoryRequest>([](auto& h, auto* r) { r->set_pointer_id(h.pointer); }),
       OwnerOrAdmin()},

      // Files (fd 0 of an agent is /dev/null)
      {"/procwarp.v1.Files/ListFds", "",
       One<v1::ListFdsRequest>([](auto& h, auto* r) { r->set_thread_id(h.thread2); }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Files/CloseFd", "",
       One<v1::CloseFdRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread2);
         r->set_fd(0);
       }),
       OwnerOrAdmin(), kEndsPart},
      {"/procwarp.v1.Files/DupFd", "",
       One<v1::DupFdRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread2);
         r->set_fd(0);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Files/TransferFd", "",
       One<v1::TransferFdRequest>([](auto& h, auto* r) {
         r->set_source_thread_id(h.thread2);
         r->set_source_fd(0);
         r->set_target_thread_id(h.thread);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Files/SetCloexec", "",
       One<v1::SetCloexecRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread2);
         r->set_fd(0);
         r->set_cloexec(true);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Files/ExportFd", "",
       One<v1::ExportFdRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread2);
         r->set_fd(0);
       }),
       OwnerOrAdmin()},
      {"/procwarp.v1.Files/ImportFd", "",
       One<v1::ImportFdRequest>([](auto& h, auto* r) {
         r->set_thread_id(h.thread2);
         r->set_target_fd(-1);
       }),
       OwnerOrAdmin()},
      // Attach and Exec reach processes procwarpd did not spawn: the kernel's
      // ptrace rule for the caller decides (root's process here, so only
      // root and admins pass). AttachThread runs last in its row: the
      // attachment lasts until the row's session ends.
      {"/procwarp.v1.Threads/AttachThread", "",
       One<v1::AttachThreadRequest>(
           [](auto& h, auto* r) { r->set_pid(h.root_attach_pid); }),
       AdminsOnly(), kEndsHandle},
      // The same attach as an origin of CreateThread: the same rule.
      {"/procwarp.v1.Threads/CreateThread", "attach",
       One<v1::CreateThreadRequest>([](auto& h, auto* r) {
         r->mutable_attach()->set_pid(h.root_create_attach_pid);
       }),
       AdminsOnly(), kEndsHandle},
      {"/procwarp.exec.v1.Exec/Call", "",
       One<procwarp::exec::v1::CallRequest>([](auto& h, auto* r) {
         r->mutable_target()->set_pid(h.root_call_pid);
         r->set_function("getpid");
       }),
       AdminsOnly()},
      {"/procwarp.exec.v1.Exec/InjectLibrary", "",
       One<procwarp::exec::v1::InjectLibraryRequest>([](auto& h, auto* r) {
         r->mutable_target()->set_pid(h.root_call_pid);
         // Already loaded there: dlopen only counts it once more.
         r->set_path("/lib/x86_64-linux-gnu/libc.so.6");
       }),
       AdminsOnly()},
      // The attach rule first; past it, root's C program is not a Python
      // (FAILED_PRECONDITION) — nothing runs in it for anyone.
      {"/procwarp.exec.v1.Exec/RunPython", "",
       One<procwarp::exec::v1::RunPythonRequest>([](auto& h, auto* r) {
         r->mutable_target()->set_pid(h.root_call_pid);
         r->set_code("pass");
       }),
       AdminsOnly(StatusCode::FAILED_PRECONDITION)},
      // Handles are per identity: an unknown one is NOT_FOUND for everyone.
      {"/procwarp.exec.v1.Exec/UnloadLibrary", "",
       One<procwarp::exec::v1::UnloadLibraryRequest>(
           [](auto&, auto* r) { r->set_handle("0123456789abcdef"); }),
       Everyone(StatusCode::NOT_FOUND)},
      // Preflight changes nothing and hides what the caller may not see.
      {"/procwarp.exec.v1.Exec/Preflight", "",
       One<procwarp::exec::v1::PreflightRequest>(
           [](auto& h, auto* r) { r->set_pid(h.root_call_pid); }),
       Everyone()},
      // Stack snapshots read a process's memory: the ptrace rule, as attach.
      // Root's `sleep` is no Python, which only those who may read it learn.
      {"/procwarp.snapshots.v1.Snapshots/PythonStack", "",
       One<procwarp::snapshots::v1::PythonStackRequest>(
           [](auto& h, auto* r) { r->set_pid(h.root_call_pid); }),
       {StatusCode::PERMISSION_DENIED, StatusCode::PERMISSION_DENIED,
        StatusCode::FAILED_PRECONDITION, StatusCode::FAILED_PRECONDITION}},
  };
  return *matrix;
}

// What a remote caller must get for `entry`: what the local identity it
// maps to gets (docs/remote.md, "The rule").
StatusCode RemoteExpected(const Entry& entry, const RemoteCaller& caller) {
  if (!caller.maps_to.has_value()) {
    // gRPC's own reflection handler can only be refused by cancelling its
    // stream (daemon/server/reflection_admission.h; the daemon logs why).
    return absl::StartsWith(entry.method, "/grpc.reflection.")
               ? StatusCode::CANCELLED
               : StatusCode::UNAUTHENTICATED;
  }
  if (LocalOnlyMethods().count(entry.method)) {
    return StatusCode::FAILED_PRECONDITION;
  }
  return entry.expected[*caller.maps_to];
}

// Every "/Service/Method" the running daemon registers, from its own
// reflection service.
std::set<std::string> RegisteredMethods(DaemonHarness& daemon) {
  namespace refl = grpc::reflection::v1alpha;
  auto stub = refl::ServerReflection::NewStub(daemon.NewChannel());
  auto ctx = Ctx();
  auto stream = stub->ServerReflectionInfo(ctx.get());
  refl::ServerReflectionRequest request;
  request.set_list_services("");
  refl::ServerReflectionResponse response;
  EXPECT_TRUE(stream->Write(request) && stream->Read(&response));
  std::vector<std::string> services;
  for (const auto& s : response.list_services_response().service()) {
    services.push_back(s.name());
  }
  EXPECT_FALSE(services.empty());
  google::protobuf::SimpleDescriptorDatabase database;
  for (const std::string& service : services) {
    request.set_file_containing_symbol(service);
    EXPECT_TRUE(stream->Write(request) && stream->Read(&response)) << service;
    for (const std::string& bytes :
         response.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      EXPECT_TRUE(file.ParseFromString(bytes));
      google::protobuf::FileDescriptorProto known;
      if (!database.FindFileByName(file.name(), &known)) database.Add(file);
    }
  }
  stream->WritesDone();
  stream->Finish();
  google::protobuf::DescriptorPool pool(&database);
  std::set<std::string> methods;
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service = pool.FindServiceByName(name);
    EXPECT_NE(service, nullptr) << name;
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      methods.insert(absl::StrCat("/", name, "/", service->method(i)->name()));
    }
  }
  return methods;
}

class AuthorizationMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    struct group* admin = getgrnam(kAdminGroup);
    ASSERT_NE(admin, nullptr) << "the test needs group " << kAdminGroup;
    callers_[kOwner] = {65534, {65534}};
    callers_[kOther] = {60001, {60001}};
    callers_[kAdmin] = {60002, {60002, admin->gr_gid}};
    callers_[kRoot] = {0, {0}};
    auto certs = TlsCertificates::Make(MakeTempDir());
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
    for (const RemoteCaller& remote : RemoteCallers()) {
      ASSERT_TRUE(certs_.AddClient(remote.name, remote.mapping).ok());
    }
    DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
    options.flags.push_back(absl::StrCat("--admin-group=", kAdminGroup));
    auto daemon = DaemonHarness::Start(TlsDaemonOptions(certs_, "", options));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    std::vector<std::string> addresses = TlsAddresses(*daemon_);
    ASSERT_FALSE(addresses.empty());
    tls_address_ = addresses[0];
    root_attach_pid_ = StartSleeper();
    root_call_pid_ = StartSleeper();
    root_create_attach_pid_ = StartSleeper();
  }

  void TearDown() override {
    for (pid_t pid : {root_attach_pid_, root_call_pid_, root_create_attach_pid_}) {
      if (pid <= 0) continue;
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    daemon_.reset();
    std::error_code ec;
    std::filesystem::remove_all(certs_.dir(), ec);
  }

  // A root process procwarpd did not spawn.
  static pid_t StartSleeper() {
    pid_t pid = fork();
    if (pid == 0) {
      execl("/bin/sleep", "sleep", "1000", nullptr);
      _exit(127);
    }
    return pid;
  }

  std::vector<std::string> PeerArgv(Caller caller) const {
    const CallerSpec& spec = callers_[caller];
    return {RunfilePath("tests/integration/matrix_peer"),
            "--socket", daemon_->socket_path(),
            "--uid", absl::StrCat(spec.uid),
            "--gid", absl::StrCat(spec.groups[0]),
            "--groups", absl::StrJoin(spec.groups, ",")};
  }

  // matrix_peer as a remote caller: run by root, who it is over TLS is the
  // certificate's mapping alone.
  std::vector<std::string> RemotePeerArgv(const RemoteCaller& remote) const {
    return {RunfilePath("tests/integration/matrix_peer"),
            "--tls", tls_address_,
            "--ca", certs_.ca(),
            "--cert", certs_.cert(remote.name),
            "--key", certs_.key(remote.name)};
  }

  // Fresh handles, made by the owner.
  Handles MakeHandles() {
    std::vector<std::string> argv = PeerArgv(kOwner);
    argv.push_back("setup");
    RunResult r = RunProgram(argv);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    std::map<std::string, std::string> fields;
    for (absl::string_view field :
         absl::StrSplit(absl::StripAsciiWhitespace(r.out), ' ')) {
      std::pair<std::string, std::string> kv = absl::StrSplit(field, '=');
      fields[kv.first] = kv.second;
    }
    return {fields["running"], fields["done"], fields["thread"],
            fields["thread2"], fields["pointer"], root_attach_pid_,
            root_call_pid_, root_create_attach_pid_};
  }

  // Makes every matrix call with `peer` (matrix_peer's argv up to its
  // operation) on fresh handles; returns each entry's status code name by
  // its key.
  std::map<std::string, std::string> RunRow(std::vector<std::string> peer,
                                            const std::string& name) {
    Handles handles = MakeHandles();
    std::string calls;
    for (int phase : {kUses, kEndsPart, kEndsHandle}) {
      for (const Entry& entry : Matrix()) {
        if (entry.phase != phase) continue;
        std::vector<std::string> hex;
        for (const std::string& bytes : entry.requests(handles)) {
          hex.push_back(absl::BytesToHexString(bytes));
        }
        absl::StrAppend(&calls, Key(entry), "\t", entry.method, "\t",
                        entry.deadline_ms, "\t", absl::StrJoin(hex, ","), "\n");
      }
    }
    const std::string file = absl::StrCat(daemon_->dir(), "/calls-", name);
    std::ofstream(file) << calls;
    peer.insert(peer.end(), {"calls", file});
    RunResult r = RunProgram(peer);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    std::map<std::string, std::string> codes;
    for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(line, ' ');
      codes[kv.first] = kv.second;
    }
    return codes;
  }

  static std::string Key(const Entry& entry) {
    return entry.label.empty() ? entry.method
                               : absl::StrCat(entry.method, "#", entry.label);
  }

  std::array<CallerSpec, kCallers> callers_;
  TlsCertificates certs_;
  std::string tls_address_;  // the daemon's 127.0.0.1:PORT
  std::unique_ptr<DaemonHarness> daemon_;
  pid_t root_attach_pid_ = -1;
  pid_t root_call_pid_ = -1;
  pid_t root_create_attach_pid_ = -1;
};

TEST_F(AuthorizationMatrixTest, EveryRegisteredRpcHasAnEntryAndEveryEntryAnRpc) {
  std::set<std::string> registered = RegisteredMethods(*daemon_);
  std::set<std::string> listed;
  for (const Entry& entry : Matrix()) listed.insert(entry.method);
  for (const std::string& method : registered) {
    EXPECT_TRUE(listed.count(method))
        << method << " is served by the daemon but has no entry in the "
        << "authorisation matrix (tests/integration/authorization_matrix_test.cc"
        << ", Matrix()): add one with the status each kind of caller must get";
  }
  for (const std::string& method : listed) {
    EXPECT_TRUE(registered.count(method))
        << method << " has a matrix entry but the daemon does not serve it";
  }
}

TEST_F(AuthorizationMatrixTest, EveryCallerGetsExactlyWhatTheMatrixSays) {
  for (int c = 0; c < kCallers; ++c) {
    const Caller caller = static_cast<Caller>(c);
    std::map<std::string, std::string> codes =
        RunRow(PeerArgv(caller), kCallerNames[caller]);
    for (const Entry& entry : Matrix()) {
      const std::string expected = absl::StatusCodeToString(
          static_cast<absl::StatusCode>(entry.expected[caller]));
      EXPECT_EQ(codes[Key(entry)], expected)
          << Key(entry) << " as " << kCallerNames[caller] << " (uid "
          << callers_[caller].uid << ")";
    }
  }
}

TEST_F(AuthorizationMatrixTest, EveryRemoteCallerGetsWhatItsMappedIdentityGets) {
  for (const RemoteCaller& remote : RemoteCallers()) {
    std::map<std::string, std::string> codes =
        RunRow(RemotePeerArgv(remote), remote.name);
    for (const Entry& entry : Matrix()) {
      const std::string expected = absl::StatusCodeToString(
          static_cast<absl::StatusCode>(RemoteExpected(entry, remote)));
      EXPECT_EQ(codes[Key(entry)], expected)
          << Key(entry) << " as " << remote.name << " over mutual TLS";
    }
  }
}

}  // namespace
}  // namespace procwarp::testing
