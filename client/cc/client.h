// procwarp C++ client: talks to procwarpd over its unix socket and manages
// child processes through it. This header is the library's entry point.
//
// Example: run `/bin/echo hello`, print its output and exit code.
//
//   absl::StatusOr<procwarp::Client> client = procwarp::Client::Connect();
//   if (!client.ok()) return Fail(client.status());  // e.g. daemon not running
//   absl::StatusOr<procwarp::Process> process = client->Spawn({
//       .argv = {"/bin/echo", "hello"},
//       .stdout_mode = procwarp::Stdio::kPipe,
//   });
//   if (!process.ok()) return Fail(process.status());
//   absl::StatusOr<procwarp::AttachSession> session = process->Attach();
//   if (!session.ok()) return Fail(session.status());
//   while (true) {
//     absl::StatusOr<procwarp::v1::AttachResponse> next = session->Read();
//     if (!next.ok()) return Fail(next.status());
//     if (next->has_exit()) {
//       std::cout << "exit: " << procwarp::ShellExitCode(next->exit()) << "\n";
//       break;
//     }
//     std::cout << next->output().data();
//   }
//   // `process` goes out of scope here: the daemon forgets the process.
//
// Remote threads (rsyscall-style syscalls, memory and fds in processes the
// daemon runs for us) are in thread.h, made by Client::CreateThread.
//
// Errors are absl::Status values carrying the daemon's gRPC code and message
// (NOT_FOUND for an unknown id, PERMISSION_DENIED for someone else's
// process, ...). Nothing here throws.
//
// Threading: a Client and the handles made from it may be used from several
// threads at once, except that a single Process, AttachSession or EventStream
// object follows the rules written on its class.
//
// Which daemon a Client talks to. Whatever serves the socket receives the
// caller's requests (environments, stdin, fds), so Connect sends nothing, not
// even gRPC's connection preface, before it has checked who serves it: it
// connects the unix socket itself, reads the peer's credentials with
// SO_PEERCRED, and accepts the peer only if its uid is
//   - 0: the system daemon (or systemd holding its activation socket);
//   - the caller's own uid, when the caller's real, effective and saved uids
//     are all that uid: a per-user daemon the caller runs, which can do
//     nothing the caller could not do itself. A setuid program (uids differ)
//     trusts none of them, so it never talks to its invoker's daemon;
//   - ConnectOptions::daemon_uid, or else $PROCWARP_DAEMON_UID (a decimal
//     uid; read with secure_getenv(3), so not by setuid programs): a daemon
//     run by another account the caller chose to trust.
// Anything else is PERMISSION_DENIED, naming the socket, the peer's uid, pid
// and command, and the setting that would trust it. The socket file's owner
// and mode play no part: whoever can bind a socket there decides them.
// SO_PEERCRED names the process that called listen(): a socket root set up and
// then handed to another account's process counts as root's.
//
// One connection per Client: the gRPC channel runs on the checked fd and never
// reconnects (reconnecting would reach whatever listens at the path by then,
// unchecked). When the daemon restarts or drops the connection, every later
// call on the Client and its handles fails with UNAVAILABLE; Connect again.
// That is the daemon's model anyway: threads, pointers and fds that are not
// persistent end with the connection that made them.
//
// The fd side socket (Thread::ExportFd / ImportFd) is used only at the main
// socket's path + ".fds": a side_socket_path the daemon names elsewhere is
// refused (the same directory through another spelling is fine), and so is a
// side socket served by another uid than the main socket's.
#ifndef PROCWARP_CLIENT_CC_CLIENT_H_
#define PROCWARP_CLIENT_CC_CLIENT_H_

#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cc/process.h"
#include "client/cc/thread.h"
#include "proto/procwarp/exec/v1/exec.pb.h"
#include "proto/procwarp/snapshots/v1/snapshots.pb.h"
#include "proto/procwarp/v1/admin.pb.h"
#include "proto/procwarp/v1/processes.pb.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp {

namespace internal {
struct Connection;
}  // namespace internal

// What one of the child's standard streams is connected to.
enum class Stdio {
  kNull,  // /dev/null
  kPipe,  // a pipe, read and written through Process::Attach
  kPty,   // a pseudo terminal, read and written through Process::Attach
};

// The common spawn settings. For everything else (files as stdio, rlimits,
// namespaces, umask, uid/gid) pass a v1::SpawnRequest to Client::Spawn.
struct SpawnOptions {
  // argv[0] is the program; without a slash it is looked up in PATH from env.
  std::vector<std::string> argv;
  // The child's exact environment as "NAME=value"; nothing is inherited.
  std::vector<std::string> env;
  // Working directory; empty leaves the daemon's default.
  std::string cwd;
  Stdio stdin_mode = Stdio::kNull;
  Stdio stdout_mode = Stdio::kNull;
  Stdio stderr_mode = Stdio::kNull;
  // Initial pty window size (0 = the daemon's default).
  uint32_t pty_rows = 0;
  uint32_t pty_cols = 0;
  // Free-form labels, shown by List.
  std::map<std::string, std::string> labels;

  v1::SpawnRequest ToRequest() const;
};

// A stream of process events (started / exited / removed) for every process
// the caller may see. Move-only; a moved-from stream may only be destroyed or
// assigned to. Next() is for one thread; Cancel() may be called from any
// thread.
class EventStream {
 public:
  EventStream(EventStream&&) noexcept = default;
  // Cancels this object's own stream first if it is still open.
  EventStream& operator=(EventStream&& other) noexcept;
  // Cancels the stream if it is still open.
  ~EventStream();

  // Blocks for the next event. When the stream ends, returns the call's
  // error (CANCELLED after Cancel(), UNAVAILABLE if the daemon went away),
  // or OUT_OF_RANGE if the daemon ended it cleanly.
  absl::StatusOr<v1::ProcessEvent> Next();

  // Ends the stream; a blocked Next() returns CANCELLED.
  void Cancel();

 private:
  friend class Client;
  using Reader = grpc::ClientReader<v1::ProcessEvent>;

  EventStream(std::unique_ptr<grpc::ClientContext> context,
              std::unique_ptr<Reader> reader);
  // Cancels and finishes a stream that is still open; no-op otherwise.
  void Abandon();

  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<Reader> reader_;
  std::optional<absl::Status> final_status_;
};

// How Client::Connect finds and trusts the daemon.
struct ConnectOptions {
  // Empty: DefaultSocketPath() (socket_path.h).
  std::string socket_path;
  // One more uid trusted to serve the socket besides root and the caller
  // (see "Which daemon a Client talks to" above); unset: $PROCWARP_DAEMON_UID
  // if that is set.
  std::optional<uid_t> daemon_uid;
};

// The client side of mutual TLS to a remote procwarpd (docs/remote.md):
// PEM files. The daemon's certificate must chain to `ca` and name the host
// connected to (DNS name or IP in its subjectAltName); `cert` and `key` are
// this client's certificate, which the daemon maps to a local identity.
struct TlsOptions {
  std::string ca;
  std::string cert;
  std::string key;
};

// A connection to procwarpd. Cheap to copy: copies share one connection.
class Client {
 public:
  // Connects to the daemon at `socket_path`, or at DefaultSocketPath() (see
  // socket_path.h: $PROCWARP_SOCKET, else /run/procwarp/procwarpd.sock for
  // root, else $XDG_RUNTIME_DIR/procwarp/procwarpd.sock) when it is empty,
  // checks who serves it (above) and that it answers. When nothing listens
  // there, returns UNAVAILABLE: "procwarpd is not running at PATH (start it
  // with: ...)"; when an untrusted uid serves it, PERMISSION_DENIED.
  static absl::StatusOr<Client> Connect(std::string socket_path = "");
  // Call it as Connect(ConnectOptions{...}): a bare {...} is ambiguous.
  static absl::StatusOr<Client> Connect(const ConnectOptions& options);

  // Connects to a remote daemon: `target` is "tls://HOST:PORT" (IPv6 as
  // [ADDR]:PORT). Everything works as over the unix socket, authorised as
  // the identity the daemon maps our certificate to, except what only works
  // on the daemon's host: Pointer Read/Write then stream instead of copying
  // directly, and Thread::ExportFd/ImportFd are FAILED_PRECONDITION.
  // Certificate problems are UNAUTHENTICATED saying which side refused and
  // why (unknown CA, expired, name mismatch, no client certificate); an
  // unreachable host is UNAVAILABLE. gRPC may reconnect a remote channel by
  // itself (verifying the daemon again): handles that end with their
  // connection are then gone.
  static absl::StatusOr<Client> Connect(const std::string& target,
                                        const TlsOptions& tls);

  // The unix socket path, or the "tls://HOST:PORT" target.
  const std::string& socket_path() const;
  // True for a tls:// connection.
  bool remote() const;

  // Daemon uptime, clients, process counts, and the caller's identity as the
  // daemon authenticated it.
  absl::StatusOr<v1::GetStatusResponse> Status() const;
  absl::StatusOr<v1::GetVersionResponse> Version() const;

  // Starts a process; the returned handle owns it (see Process).
  absl::StatusOr<Process> Spawn(const SpawnOptions& options) const;
  absl::StatusOr<Process> Spawn(const v1::SpawnRequest& request) const;

  // The daemon's record of process `id`.
  absl::StatusOr<v1::ProcessInfo> GetProcess(const std::string& id) const;

  // A handle on an existing process `id` that does NOT own it: destroying the
  // handle leaves the process alone.
  absl::StatusOr<Process> Open(const std::string& id) const;

  // The caller's processes; with `all`, every identity's (admins only).
  absl::StatusOr<std::vector<v1::ProcessInfo>> List(bool all = false) const;

  // Starts an agent thread running as the caller; the returned handle owns
  // it (see Thread in thread.h).
  absl::StatusOr<Thread> CreateThread(
      const ThreadOptions& options = {}) const;
  absl::StatusOr<Thread> CreateThread(
      const v1::CreateThreadRequest& request) const;

  // Attaches to (the main thread of) existing process `pid`, or to thread
  // `tid` of it, and returns the same kind of handle as CreateThread: t->Open,
  // t->Allocate, fd.Read... all work inside the process. Destroying an owning
  // handle detaches (ExitThread); the process is never killed. See
  // v1::AttachThreadRequest for who may attach where.
  absl::StatusOr<Thread> AttachThread(pid_t pid, pid_t tid = 0,
                                      bool persistent = false) const;
  absl::StatusOr<Thread> AttachThread(
      const v1::AttachThreadRequest& request) const;

  // The daemon's record of thread `id`.
  absl::StatusOr<v1::ThreadInfo> GetThread(const std::string& id) const;

  // A handle on an existing thread `id` (e.g. a persistent one made by an
  // earlier connection) that does NOT own it.
  absl::StatusOr<Thread> OpenThread(const std::string& id) const;

  // The caller's threads; with `all`, every identity's (admins only).
  absl::StatusOr<std::vector<v1::ThreadInfo>> ListThreads(
      bool all = false) const;

  // Remote calls and library injection in any process the caller could
  // ptrace itself (root and admins: any process but procwarpd and its
  // children), attached for the one call (docs/attach.md).
  //
  // Calls `function` ("libc.so.6:getpid", "getpid" in load order,
  // "main-program:my_func" or an address "0x7f...") in process `pid` with up
  // to 6 integer/pointer arguments. `return_value` is rax; a crash in the
  // callee is a result too (`has_crash()`: signal and fault address; the
  // target was put back and runs on).
  absl::StatusOr<exec::v1::CallResponse> Call(
      pid_t pid, const std::string& function,
      const std::vector<uint64_t>& args = {}) const;

  // dlopen()s the shared library at absolute `path` in glibc process `pid`
  // (its constructors run there). The daemon opens the file as the caller.
  // The returned handle is the caller's until UnloadLibrary or the target's
  // exit; it survives this connection.
  absl::StatusOr<exec::v1::InjectLibraryResponse> InjectLibrary(
      pid_t pid, const std::string& path) const;
  // dlclose()s what InjectLibrary loaded.
  absl::Status UnloadLibrary(const std::string& handle) const;

  // What Exec can and cannot do with process `pid` and why, without
  // changing it; with no pid, only the daemon's side (`procwarp doctor`).
  absl::StatusOr<exec::v1::PreflightResponse> Preflight(
      std::optional<pid_t> pid = std::nullopt) const;

  // Runs Python source in live CPython 3.8-3.13 process (docs/python.md):
  // the response carries the code's stdout/stderr, the value's repr (eval
  // mode) or the exception it raised. The call's own deadline is the
  // request's timeout_ms plus a margin (the daemon's default when 0).
  absl::StatusOr<exec::v1::RunPythonResponse> RunPython(
      const exec::v1::RunPythonRequest& request) const;
  // Every Python thread's frames in process request.pid (CPython 3.8-3.13),
  // read from its memory without running code in it (docs/python.md):
  // `locals` adds each frame's local variables, `consistent` stops the
  // target's threads for the read (by default it runs on).
  absl::StatusOr<snapshots::v1::PythonStackResponse> PythonStack(
      const snapshots::v1::PythonStackRequest& request) const;

  // Subscribes to process events. Events that happen before the daemon has
  // registered the subscription are not seen.
  EventStream Events() const;

  // Calls `on_event` for each event until it returns false (then returns OK)
  // or the stream fails (then returns the error).
  absl::Status Events(
      const std::function<bool(const v1::ProcessEvent&)>& on_event) const;

 private:
  explicit Client(std::shared_ptr<internal::Connection> connection);

  std::shared_ptr<internal::Connection> connection_;
};

}  // namespace procwarp

#endif  // PROCWARP_CLIENT_CC_CLIENT_H_
