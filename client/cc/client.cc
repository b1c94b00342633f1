// Client, SpawnOptions and EventStream (see client.h).
#include "client/cc/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/cc/tls_diagnosis.h"
#include "client/cc/connection.h"
#include "client/cc/daemon_peer.h"
#include "client/cc/grpc_status.h"
#include "client/cc/socket_path.h"

namespace procwarp {
namespace {

// How long Connect waits for the daemon's first answer. Generous because a
// socket-activated daemon may still be starting when we connect.
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);
// HTTP/2 receive window per stream and largest DATA frame we accept from a
// remote daemon (see Client::Connect for TLS).
constexpr int kStreamLookahead = 8 << 20;
constexpr int kMaxFrame = 1 << 20;

v1::StdioKind ToStdioKind(Stdio mode) {
  switch (mode) {
    case Stdio::kNull:
      return v1::STDIO_KIND_NULL;
    case Stdio::kPipe:
      return v1::STDIO_KIND_PIPE;
    case Stdio::kPty:
      return v1::STDIO_KIND_PTY;
  }
  return v1::STDIO_KIND_NULL;
}

// Explains a failed first call so that the person reading it knows whether
// the daemon is missing, something else owns the socket, or the call failed.
absl::Status ConnectError(const std::string& socket_path,
                          const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      return DaemonNotRunningError(socket_path);
    case absl::StatusCode::kUnimplemented:
      return absl::FailedPreconditionError(absl::StrCat(
          "the server at ", socket_path,
          " is not procwarpd (it does not serve procwarp.v1.Admin)"));
    default:
      return absl::Status(
          status.code(), absl::StrCat("procwarpd at ", socket_path,
                                      " did not answer: ", status.message()));
  }
}

struct HostPort {
  std::string host;         // without [ ]
  std::string port;
  std::string grpc_target;  // as gRPC wants it: "host:port", "[v6]:port"
};

absl::StatusOr<HostPort> ParseTlsTarget(const std::string& target) {
  absl::string_view rest = target;
  if (!absl::ConsumePrefix(&rest, "tls://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "remote target '", target, "' must look like tls://HOST:PORT"));
  }
  size_t colon = rest.rfind(':');
  if (colon == absl::string_view::npos || colon == 0 ||
      colon + 1 == rest.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "remote target '", target, "' has no port (tls://HOST:PORT)"));
  }
  HostPort where;
  absl::string_view host = rest.substr(0, colon);
  where.port = std::string(rest.substr(colon + 1));
  where.grpc_target = std::string(rest);
  if (absl::ConsumePrefix(&host, "[") && !absl::ConsumeSuffix(&host, "]")) {
    return absl::InvalidArgumentError(
        absl::StrCat("remote target '", target, "': unbalanced [ ]"));
  }
  where.host = std::string(host);
  return where;
}

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read the ", what, " file '", path, "': ", strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<internal::TlsMaterial> ReadTlsMaterial(const TlsOptions& tls) {
  if (tls.ca.empty()) {
    return absl::InvalidArgumentError(
        "a tls:// connection needs the CA that signed the daemon's "
        "certificate (--ca, TlsOptions::ca)");
  }
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs both --cert and --key");
  }
  internal::TlsMaterial m{.ca_file = tls.ca, .cert_file = tls.cert,
                          .key_file = tls.key};
  absl::StatusOr<std::string> ca = ReadPem(tls.ca, "CA");
  if (!ca.ok()) return ca.status();
  m.ca_pem = *std::move(ca);
  if (!tls.cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPem(tls.cert, "certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(tls.key, "key");
    if (!key.ok()) return key.status();
    m.cert_pem = *std::move(cert);
    m.key_pem = *std::move(key);
  }
  return m;
}

}  // namespace

v1::SpawnRequest SpawnOptions::ToRequest() const {
  v1::SpawnRequest request;
  request.mutable_argv()->Add(argv.begin(), argv.end());
  request.mutable_env()->Add(env.begin(), env.end());
  request.set_cwd(cwd);
  request.mutable_stdin()->set_kind(ToStdioKind(stdin_mode));
  request.mutable_stdout()->set_kind(ToStdioKind(stdout_mode));
  request.mutable_stderr()->set_kind(ToStdioKind(stderr_mode));
  if (pty_rows != 0 || pty_cols != 0) {
    request.mutable_window_size()->set_rows(pty_rows);
    request.mutable_window_size()->set_cols(pty_cols);
  }
  request.mutable_labels()->insert(labels.begin(), labels.end());
  return request;
}

// ---------------------------------------------------------------------------
// EventStream

EventStream::EventStream(std::unique_ptr<grpc::ClientContext> context,
                         std::unique_ptr<Reader> reader)
    : context_(std::move(context)), reader_(std::move(reader)) {}

EventStream& EventStream::operator=(EventStream&& other) noexcept {
  if (this != &other) {
    Abandon();
    context_ = std::move(other.context_);
    reader_ = std::move(other.reader_);
    final_status_ = std::move(other.final_status_);
  }
  return *this;
}

EventStream::~EventStream() { Abandon(); }

void EventStream::Abandon() {
  if (reader_ == nullptr || final_status_.has_value()) return;
  Cancel();
  v1::ProcessEvent ignored;
  while (reader_->Read(&ignored)) {
  }
  final_status_ = FromGrpcStatus(reader_->Finish());
}

absl::StatusOr<v1::ProcessEvent> EventStream::Next() {
  if (!final_status_.has_value()) {
    v1::ProcessEvent event;
    if (reader_->Read(&event)) return event;
    final_status_ = FromGrpcStatus(reader_->Finish());
  }
  if (!final_status_->ok()) return *final_status_;
  return absl::OutOfRangeError("the daemon ended the event stream");
}

void EventStream::Cancel() { context_->TryCancel(); }

// ---------------------------------------------------------------------------
// Client

Client::Client(std::shared_ptr<internal::Connection> connection)
    : connection_(std::move(connection)) {}

absl::StatusOr<Client> Client::Connect(std::string socket_path) {
  return Connect(ConnectOptions{.socket_path = std::move(socket_path)});
}

absl::StatusOr<Client> Client::Connect(const ConnectOptions& options) {
  const std::string socket_path = options.socket_path.empty()
                                      ? DefaultSocketPath()
                                      : options.socket_path;
  absl::StatusOr<DaemonTrust> trust =
      DaemonTrust::ForThisProcess(options.daemon_uid);
  if (!trust.ok()) return trust.status();
  // Our own connect(): it tells "nothing listens" apart from "no permission"
  // precisely, where gRPC would only say UNAVAILABLE, and it lets us check
  // the peer before gRPC sends anything.
  absl::StatusOr<DaemonSocket> socket =
      ConnectToDaemon(socket_path, *trust, kConnectTimeout);
  if (!socket.ok()) return socket.status();
  Client client(std::make_shared<internal::Connection>(socket_path,
                                                       *std::move(socket)));
  grpc::ClientContext context;
  internal::SetTimeout(context, kConnectTimeout);
  v1::GetVersionResponse version;
  absl::Status status = FromGrpcStatus(client.connection_->admin->GetVersion(
      &context, v1::GetVersionRequest(), &version));
  if (!status.ok()) return ConnectError(socket_path, status);
  return client;
}

absl::StatusOr<Client> Client::Connect(const std::string& target,
                                       const TlsOptions& tls) {
  absl::StatusOr<HostPort> where = ParseTlsTarget(target);
  if (!where.ok()) return where.status();
  absl::StatusOr<internal::TlsMaterial> material = ReadTlsMaterial(tls);
  if (!material.ok()) return material.status();
  if (absl::Status own = internal::CheckOwnCredentials(*material); !own.ok()) {
    return own;
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = material->ca_pem;
  ssl.pem_cert_chain = material->cert_pem;
  ssl.pem_private_key = material->key_pem;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  // Streams from a remote daemon (docs/remote.md, "Performance"): let it
  // send well ahead of what we have read (HTTP/2 flow control window) and
  // in large frames, so a busy machine's scheduling delays on either side
  // do not stall the stream on window updates.
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kStreamLookahead);
  args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, kMaxFrame);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      where->grpc_target, grpc::SslCredentials(ssl), args);
  Client client(std::make_shared<internal::Connection>(target, channel));
  grpc::ClientContext context;
  internal::SetTimeout(context, kConnectTimeout);
  v1::GetVersionResponse version;
  absl::Status status = FromGrpcStatus(client.connection_->admin->GetVersion(
      &context, v1::GetVersionRequest(), &version));
  if (status.ok()) return client;
  if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) {
    // gRPC says only UNAVAILABLE for every handshake failure: replay it
    // with OpenSSL to say who refused what.
    absl::Status why = internal::DiagnoseTls(where->host, where->port,
                                             *material, kConnectTimeout);
    if (!why.ok()) return why;
  }
  return absl::Status(status.code(), absl::StrCat("procwarpd at ", target,
                                                  ": ", status.message()));
}

const std::string& Client::socket_path() const {
  return connection_->socket_path;
}

bool Client::remote() const { return connection_->remote; }

absl::StatusOr<v1::GetStatusResponse> Client::Status() const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::GetStatusResponse response;
  absl::Status status = FromGrpcStatus(connection_->admin->GetStatus(
      &context, v1::GetStatusRequest(), &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::GetVersionResponse> Client::Version() const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::GetVersionResponse response;
  absl::Status status = FromGrpcStatus(connection_->admin->GetVersion(
      &context, v1::GetVersionRequest(), &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<Process> Client::Spawn(const SpawnOptions& options) const {
  return Spawn(options.ToRequest());
}

absl::StatusOr<Process> Client::Spawn(const v1::SpawnRequest& request) const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::SpawnResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->processes->Spawn(&context, request, &response));
  if (!status.ok()) return status;
  return Process(connection_, std::move(*response.mutable_process()),
                 /*owned=*/true);
}

absl::StatusOr<v1::ProcessInfo> Client::GetProcess(const std::string& id) const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::GetProcessRequest request;
  request.set_id(id);
  v1::GetProcessResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->processes->Get(&context, request, &response));
  if (!status.ok()) return status;
  return std::move(*response.mutable_process());
}

absl::StatusOr<Process> Client::Open(const std::string& id) const {
  absl::StatusOr<v1::ProcessInfo> info = GetProcess(id);
  if (!info.ok()) return info.status();
  return Process(connection_, *std::move(info), /*owned=*/false);
}

absl::StatusOr<std::vector<v1::ProcessInfo>> Client::List(bool all) const {
  v1::ListProcessesRequest request;
  request.set_all(all);
  std::vector<v1::ProcessInfo> processes;
  // The daemon pages its answer (each page fits one message); follow it.
  do {
    grpc::ClientContext context;
    internal::SetTimeout(context, internal::kShortCallTimeout);
    v1::ListProcessesResponse response;
    absl::Status status = FromGrpcStatus(
        connection_->processes->List(&context, request, &response));
    if (!status.ok()) return status;
    processes.insert(
        processes.end(),
        std::make_move_iterator(response.mutable_processes()->begin()),
        std::make_move_iterator(response.mutable_processes()->end()));
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return processes;
}

absl::StatusOr<Thread> Client::CreateThread(
    const ThreadOptions& options) const {
  return CreateThread(options.ToRequest());
}

absl::StatusOr<Thread> Client::CreateThread(
    const v1::CreateThreadRequest& request) const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::CreateThreadResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->threads->CreateThread(&context, request, &response));
  if (!status.ok()) return status;
  return Thread(connection_, std::move(*response.mutable_thread()),
                /*owned=*/true);
}

absl::StatusOr<Thread> Client::AttachThread(pid_t pid, pid_t tid,
                                            bool persistent) const {
  v1::AttachThreadRequest request;
  request.set_pid(pid);
  if (tid != 0) request.set_tid(tid);
  request.set_persistent(persistent);
  return AttachThread(request);
}

absl::StatusOr<Thread> Client::AttachThread(
    const v1::AttachThreadRequest& request) const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::AttachThreadResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->threads->AttachThread(&context, request, &response));
  if (!status.ok()) return status;
  return Thread(connection_, std::move(*response.mutable_thread()),
                /*owned=*/true);
}

absl::StatusOr<v1::ThreadInfo> Client::GetThread(const std::string& id) const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::GetThreadRequest request;
  request.set_id(id);
  v1::GetThreadResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->threads->GetThread(&context, request, &response));
  if (!status.ok()) return status;
  return std::move(*response.mutable_thread());
}

absl::StatusOr<Thread> Client::OpenThread(const std::string& id) const {
  absl::StatusOr<v1::ThreadInfo> info = GetThread(id);
  if (!info.ok()) return info.status();
  return Thread(connection_, *std::move(info), /*owned=*/false);
}

absl::StatusOr<std::vector<v1::ThreadInfo>> Client::ListThreads(
    bool all) const {
  v1::ListThreadsRequest request;
  request.set_all(all);
  std::vector<v1::ThreadInfo> threads;
  // The daemon pages its answer (each page fits one message); follow it.
  do {
    grpc::ClientContext context;
    internal::SetTimeout(context, internal::kShortCallTimeout);
    v1::ListThreadsResponse response;
    absl::Status status = FromGrpcStatus(
        connection_->threads->ListThreads(&context, request, &response));
    if (!status.ok()) return status;
    threads.insert(threads.end(),
                   std::make_move_iterator(response.mutable_threads()->begin()),
                   std::make_move_iterator(response.mutable_threads()->end()));
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return threads;
}

namespace internal {

absl::StatusOr<exec::v1::CallResponse> ExecCall(
    const Connection& connection, const exec::v1::Target& target,
    const std::string& function, const std::vector<uint64_t>& args) {
  grpc::ClientContext context;
  SetTimeout(context, kExecCallTimeout);
  exec::v1::CallRequest request;
  *request.mutable_target() = target;
  request.set_function(function);
  request.mutable_args()->Add(args.begin(), args.end());
  exec::v1::CallResponse response;
  absl::Status status =
      FromGrpcStatus(connection.exec->Call(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<exec::v1::InjectLibraryResponse> ExecInjectLibrary(
    const Connection& connection, const exec::v1::Target& target,
    const std::string& path) {
  grpc::ClientContext context;
  SetTimeout(context, kExecCallTimeout);
  exec::v1::InjectLibraryRequest request;
  *request.mutable_target() = target;
  request.set_path(path);
  exec::v1::InjectLibraryResponse response;
  absl::Status status = FromGrpcStatus(
      connection.exec->InjectLibrary(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

}  // namespace internal

absl::StatusOr<exec::v1::CallResponse> Client::Call(
    pid_t pid, const std::string& function,
    const std::vector<uint64_t>& args) const {
  exec::v1::Target target;
  target.set_pid(pid);
  return internal::ExecCall(*connection_, target, function, args);
}

absl::StatusOr<exec::v1::InjectLibraryResponse> Client::InjectLibrary(
    pid_t pid, const std::string& path) const {
  exec::v1::Target target;
  target.set_pid(pid);
  return internal::ExecInjectLibrary(*connection_, target, path);
}

absl::Status Client::UnloadLibrary(const std::string& handle) const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kExecCallTimeout);
  exec::v1::UnloadLibraryRequest request;
  request.set_handle(handle);
  exec::v1::UnloadLibraryResponse response;
  return FromGrpcStatus(
      connection_->exec->UnloadLibrary(&context, request, &response));
}

absl::StatusOr<exec::v1::PreflightResponse> Client::Preflight(
    std::optional<pid_t> pid) const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  exec::v1::PreflightRequest request;
  if (pid.has_value()) request.set_pid(*pid);
  exec::v1::PreflightResponse response;
  absl::Status status =
      FromGrpcStatus(connection_->exec->Preflight(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<snapshots::v1::PythonStackResponse> Client::PythonStack(
    const snapshots::v1::PythonStackRequest& request) const {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kExecCallTimeout);
  snapshots::v1::PythonStackResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->snapshots->PythonStack(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<exec::v1::RunPythonResponse> Client::RunPython(
    const exec::v1::RunPythonRequest& request) const {
  grpc::ClientContext context;
  // The daemon answers at the request's timeout; the margin covers the
  // attach, the withdrawal and the answer itself.
  internal::SetTimeout(context,
                       std::max(internal::kExecCallTimeout,
                                absl::Milliseconds(request.timeout_ms()) + absl::Seconds(10)));
  exec::v1::RunPythonResponse response;
  absl::Status status =
      FromGrpcStatus(connection_->exec->RunPython(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

EventStream Client::Events() const {
  auto context = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<EventStream::Reader> reader =
      connection_->processes->Events(context.get(), v1::EventsRequest());
  return EventStream(std::move(context), std::move(reader));
}

absl::Status Client::Events(
    const std::function<bool(const v1::ProcessEvent&)>& on_event) const {
  EventStream stream = Events();
  while (true) {
    absl::StatusOr<v1::ProcessEvent> event = stream.Next();
    if (!event.ok()) return event.status();
    if (!on_event(*event)) return absl::OkStatus();
  }
}

}  // namespace procwarp
