// Process and AttachSession: thin wrappers over the Processes service calls
// that act on one process id (see process.h).
#include "client/cc/process.h"

#include <string.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "client/cc/connection.h"
#include "client/cc/grpc_status.h"

namespace procwarp {
namespace {

// How long a destructor waits for the daemon to forget a process: short, so
// that an unresponsive daemon does not stall the caller's cleanup for long.
constexpr absl::Duration kRemoveOnDestroyTimeout = absl::Seconds(5);

}  // namespace

int ShellExitCode(const v1::ExitStatus& status) {
  switch (status.how_case()) {
    case v1::ExitStatus::kCode:
      return status.code();
    case v1::ExitStatus::kSignal:
      return 128 + status.signal();
    case v1::ExitStatus::HOW_NOT_SET:
      break;
  }
  return 255;
}

std::string DescribeExitStatus(const v1::ExitStatus& status) {
  std::string text;
  switch (status.how_case()) {
    case v1::ExitStatus::kCode:
      text = absl::StrCat("exit code ", status.code());
      break;
    case v1::ExitStatus::kSignal: {
      const char* name = sigabbrev_np(status.signal());
      text = absl::StrCat("killed by signal ", status.signal());
      if (name != nullptr) absl::StrAppend(&text, " (", name, ")");
      break;
    }
    case v1::ExitStatus::HOW_NOT_SET:
      text = "not exited";
      break;
  }
  if (status.core_dumped()) absl::StrAppend(&text, " (core dumped)");
  return text;
}

// ---------------------------------------------------------------------------
// AttachSession

AttachSession::AttachSession(std::string process_id,
                             std::unique_ptr<grpc::ClientContext> context,
                             std::unique_ptr<Stream> stream)
    : process_id_(std::move(process_id)),
      context_(std::move(context)),
      stream_(std::move(stream)) {}

AttachSession& AttachSession::operator=(AttachSession&& other) noexcept {
  if (this != &other) {
    Abandon();
    process_id_ = std::move(other.process_id_);
    context_ = std::move(other.context_);
    stream_ = std::move(other.stream_);
    writes_done_ = other.writes_done_;
    reads_done_ = other.reads_done_;
    final_status_ = std::move(other.final_status_);
  }
  return *this;
}

AttachSession::~AttachSession() { Abandon(); }

void AttachSession::Abandon() {
  if (stream_ == nullptr || final_status_.has_value()) return;
  Cancel();
  Finish().IgnoreError();
}

absl::Status AttachSession::WriteStdin(absl::string_view data) {
  if (data.empty()) return absl::OkStatus();
  v1::AttachRequest request;
  request.set_stdin(std::string(data));
  if (writes_done_ || !stream_->Write(request)) {
    return absl::UnavailableError(absl::StrCat(
        "the attach stream of process ", process_id_, " is closed"));
  }
  return absl::OkStatus();
}

absl::Status AttachSession::CloseStdin() {
  v1::AttachRequest request;
  request.set_close_stdin(true);
  if (writes_done_ || !stream_->Write(request)) {
    return absl::UnavailableError(absl::StrCat(
        "the attach stream of process ", process_id_, " is closed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AttachResponse> AttachSession::Read() {
  if (!reads_done_) {
    v1::AttachResponse response;
    if (stream_->Read(&response)) return response;
    reads_done_ = true;
    absl::Status status = FinishAfterLastRead();
    if (!status.ok()) return status;
  }
  if (!final_status_->ok()) return *final_status_;
  return absl::OutOfRangeError(absl::StrCat(
      "the attach stream of process ", process_id_, " has ended"));
}

void AttachSession::Cancel() { context_->TryCancel(); }

absl::Status AttachSession::Finish() {
  if (final_status_.has_value()) return *final_status_;
  if (!writes_done_) {
    writes_done_ = true;
    stream_->WritesDone();
  }
  v1::AttachResponse ignored;
  while (stream_->Read(&ignored)) {
  }
  reads_done_ = true;
  return FinishAfterLastRead();
}

absl::Status AttachSession::FinishAfterLastRead() {
  // gRPC lets Finish() run while another thread writes: it only receives.
  final_status_ = FromGrpcStatus(stream_->Finish());
  return *final_status_;
}

// ---------------------------------------------------------------------------
// Process

Process::Process(std::shared_ptr<internal::Connection> connection,
                 v1::ProcessInfo info, bool owned)
    : connection_(std::move(connection)), info_(std::move(info)), owned_(owned) {}

Process::Process(Process&& other) noexcept
    : connection_(std::move(other.connection_)),
      info_(std::move(other.info_)),
      owned_(std::exchange(other.owned_, false)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    RemoveIfOwned();
    connection_ = std::move(other.connection_);
    info_ = std::move(other.info_);
    owned_ = std::exchange(other.owned_, false);
  }
  return *this;
}

Process::~Process() { RemoveIfOwned(); }

void Process::RemoveIfOwned() {
  if (!owned_ || connection_ == nullptr) return;
  owned_ = false;
  grpc::ClientContext context;
  internal::SetTimeout(context, kRemoveOnDestroyTimeout);
  v1::RemoveProcessRequest request;
  request.set_id(info_.id());
  request.set_force(true);
  v1::RemoveProcessResponse response;
  // Best effort: the process may already be gone, or the daemon with it.
  connection_->processes->Remove(&context, request, &response);
}

absl::Status Process::CheckNotEmpty() const {
  if (connection_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "this procwarp::Process handle is empty (released or moved from)");
}

absl::StatusOr<v1::ExitStatus> Process::Wait(
    std::optional<absl::Duration> timeout) {
  if (absl::Status status = CheckNotEmpty(); !status.ok()) return status;
  grpc::ClientContext context;
  if (timeout.has_value()) internal::SetTimeout(context, *timeout);
  v1::WaitRequest request;
  request.set_id(info_.id());
  v1::WaitResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->processes->Wait(&context, request, &response));
  if (!status.ok()) return status;
  info_ = response.process();
  return info_.exit_status();
}

absl::StatusOr<v1::ProcessInfo> Process::Refresh() {
  if (absl::Status status = CheckNotEmpty(); !status.ok()) return status;
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::GetProcessRequest request;
  request.set_id(info_.id());
  v1::GetProcessResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->processes->Get(&context, request, &response));
  if (!status.ok()) return status;
  info_ = response.process();
  return info_;
}

absl::Status Process::Signal(int signal) {
  if (absl::Status status = CheckNotEmpty(); !status.ok()) return status;
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::SignalRequest request;
  request.set_id(info_.id());
  request.set_signal(signal);
  v1::SignalResponse response;
  return FromGrpcStatus(
      connection_->processes->Signal(&context, request, &response));
}

absl::StatusOr<AttachSession> Process::Attach(const AttachOptions& options) {
  if (absl::Status status = CheckNotEmpty(); !status.ok()) return status;
  auto context = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<AttachSession::Stream> stream =
      connection_->processes->Attach(context.get());
  AttachSession session(info_.id(), std::move(context), std::move(stream));
  // The daemon learns which process we mean from the first message.
  v1::AttachRequest first;
  first.set_id(info_.id());
  first.set_no_replay(options.no_replay);
  if (!session.stream_->Write(first)) {
    absl::Status status = session.Finish();
    if (status.ok()) {
      status = absl::UnavailableError(absl::StrCat(
          "the daemon closed the attach stream of process ", info_.id()));
    }
    return status;
  }
  return session;
}

absl::Status Process::ResizePty(uint32_t rows, uint32_t cols) {
  if (absl::Status status = CheckNotEmpty(); !status.ok()) return status;
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::ResizePtyRequest request;
  request.set_id(info_.id());
  request.mutable_size()->set_rows(rows);
  request.mutable_size()->set_cols(cols);
  v1::ResizePtyResponse response;
  return FromGrpcStatus(
      connection_->processes->ResizePty(&context, request, &response));
}

absl::Status Process::Remove(bool force) {
  if (absl::Status status = CheckNotEmpty(); !status.ok()) return status;
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::RemoveProcessRequest request;
  request.set_id(info_.id());
  request.set_force(force);
  v1::RemoveProcessResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->processes->Remove(&context, request, &response));
  if (status.ok()) owned_ = false;
  return status;
}

std::string Process::Release() {
  std::string id = info_.id();
  owned_ = false;
  connection_.reset();
  info_.Clear();
  return id;
}

}  // namespace procwarp
