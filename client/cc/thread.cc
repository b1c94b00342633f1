// Thread, Pointer, FileDescriptor and SyscallBatch (see thread.h).
#include "client/cc/thread.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "common/fd_passing.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/cc/connection.h"
#include "client/cc/daemon_peer.h"
#include "client/cc/grpc_status.h"

namespace procwarp {
namespace {

// Largest read the daemon answers in one unary Memory.Read (4 MiB - 64 KiB);
// bigger reads use ReadStream.
constexpr uint64_t kMaxUnaryRead = (4 << 20) - (64 << 10);
// Chunk size for WriteStream: well under gRPC's default message limit.
constexpr size_t kWriteChunk = 1 << 20;
// Transfers from this size up first try the direct path (ReadToClient /
// WriteFromClient); below it one unary message is as quick.
constexpr uint64_t kMinDirect = 256 << 10;
// Syscalls per Execute message: large enough to amortise the message, small
// enough that several messages are in flight at once.
constexpr size_t kSyscallsPerMessage = 512;

v1::Syscall MakeSyscall(int64_t number, const std::vector<int64_t>& args) {
  v1::Syscall syscall;
  syscall.set_number(number);
  syscall.mutable_args()->Add(args.begin(), args.end());
  return syscall;
}

// Threads.Syscall on `thread_id`; shared by Thread and FileDescriptor.
absl::StatusOr<SyscallResult> CallSyscall(internal::Connection& connection,
                                          const std::string& thread_id,
                                          int64_t number,
                                          const std::vector<int64_t>& args) {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::SyscallRequest request;
  request.set_thread_id(thread_id);
  *request.mutable_syscall() = MakeSyscall(number, args);
  v1::SyscallResponse response;
  absl::Status status = FromGrpcStatus(
      connection.threads->Syscall(&context, request, &response));
  if (!status.ok()) return status;
  return SyscallResult::FromProto(response.result());
}

absl::Status CloseFd(internal::Connection& connection,
                     const std::string& thread_id, int fd) {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::CloseFdRequest request;
  request.set_thread_id(thread_id);
  request.set_fd(fd);
  v1::CloseFdResponse response;
  return FromGrpcStatus(connection.files->CloseFd(&context, request, &response));
}

absl::Status FreePointer(internal::Connection& connection,
                         const std::string& pointer_id) {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::FreeRequest request;
  request.set_pointer_id(pointer_id);
  v1::FreeResponse response;
  return FromGrpcStatus(connection.memory->Free(&context, request, &response));
}

absl::Status ExitThread(internal::Connection& connection,
                        const std::string& thread_id, int exit_code) {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::ExitThreadRequest request;
  request.set_id(thread_id);
  request.set_exit_code(exit_code);
  v1::ExitThreadResponse response;
  return FromGrpcStatus(
      connection.threads->ExitThread(&context, request, &response));
}

absl::StatusOr<std::string> ReadUnary(internal::Connection& connection,
                                      const v1::ReadMemoryRequest& request) {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::ReadMemoryResponse response;
  absl::Status status =
      FromGrpcStatus(connection.memory->Read(&context, request, &response));
  if (!status.ok()) return status;
  return std::move(*response.mutable_data());
}

// Memory.ReadStream of `request` into `out` (request.length() bytes). The
// daemon sends the range in order; a chunk that does not continue it is
// refused rather than written anywhere else.
absl::Status ReadStreamedInto(internal::Connection& connection,
                              const v1::ReadMemoryRequest& request, char* out) {
  // No deadline: a large transfer takes as long as it takes.
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::ReadMemoryChunk>> reader =
      connection.memory->ReadStream(&context, request);
  v1::ReadMemoryChunk chunk;
  uint64_t done = 0;
  while (reader->Read(&chunk)) {
    const std::string& data = chunk.data();
    if (chunk.offset() != request.offset() + done ||
        data.size() > request.length() - done) {
      context.TryCancel();
      reader->Finish().ok();  // ends the call; the status is ours below
      return absl::InternalError(absl::StrCat(
          "Memory.ReadStream: the daemon sent ", data.size(),
          " bytes at offset ", chunk.offset(), ", outside the ",
          request.length(), " bytes at offset ", request.offset(), " asked for"));
    }
    memcpy(out + done, data.data(), data.size());
    done += data.size();
  }
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (!status.ok()) return status;
  if (done != request.length()) {
    return absl::InternalError(absl::StrCat("Memory.ReadStream ended after ",
                                            done, " of ", request.length(),
                                            " bytes"));
  }
  return absl::OkStatus();
}

// Memory.ReadToClient (into `local`) or WriteFromClient (from it): the
// thread's agent copies straight between its memory and ours, a local-only
// path several times faster than streaming the bytes through gRPC.
absl::Status CopyDirect(internal::Connection& connection, bool to_client,
                        const std::string& pointer_id, uint64_t offset,
                        uint64_t length, const char* local) {
  grpc::ClientContext context;
  v1::DirectMemoryRequest request;
  request.set_pointer_id(pointer_id);
  request.set_offset(offset);
  request.set_length(length);
  request.set_client_address(reinterpret_cast<uint64_t>(local));
  v1::DirectMemoryResponse response;
  return FromGrpcStatus(
      to_client
          ? connection.memory->ReadToClient(&context, request, &response)
          : connection.memory->WriteFromClient(&context, request, &response));
}

// Whether a refused direct copy should be retried over the streamed path:
// the daemon says FAILED_PRECONDITION when the direct path cannot work here
// (a remote client, a thread that may not reach us, process_vm_* forbidden
// by a seccomp policy). A range that really is unmapped fails the same way
// again, so retrying costs only time in an error case.
bool ShouldStreamInstead(const absl::Status& direct) {
  return absl::IsFailedPrecondition(direct) || absl::IsUnimplemented(direct);
}

absl::Status WriteUnary(internal::Connection& connection,
                        const v1::WriteMemoryRequest& request) {
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::WriteMemoryResponse response;
  return FromGrpcStatus(connection.memory->Write(&context, request, &response));
}

absl::Status WriteStreamed(internal::Connection& connection,
                           const std::string& pointer_id,
                           absl::string_view data, uint64_t offset) {
  grpc::ClientContext context;
  v1::WriteMemoryResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::WriteMemoryRequest>> writer =
      connection.memory->WriteStream(&context, &response);
  for (size_t done = 0; done < data.size(); done += kWriteChunk) {
    v1::WriteMemoryRequest request;
    request.set_pointer_id(pointer_id);
    request.set_offset(offset + done);
    absl::string_view piece = data.substr(done, kWriteChunk);
    request.set_data(piece.data(), piece.size());
    // A failed write means the daemon ended the call; Finish() says why.
    if (!writer->Write(request)) break;
  }
  writer->WritesDone();
  return FromGrpcStatus(writer->Finish());
}

}  // namespace

v1::CreateThreadRequest ThreadOptions::ToRequest() const {
  v1::CreateThreadRequest request;
  request.set_persistent(persistent);
  request.mutable_labels()->insert(labels.begin(), labels.end());
  v1::Namespaces* namespaces;
  if (parent_thread_id.empty()) {
    namespaces = request.mutable_launch()->mutable_namespaces();
  } else {
    v1::CloneThread& clone = *request.mutable_clone();
    clone.set_parent_thread_id(parent_thread_id);
    clone.set_share_fd_table(share_fd_table);
    namespaces = clone.mutable_namespaces();
  }
  namespaces->set_user(user_namespace);
  namespaces->set_mount(mount_namespace);
  namespaces->set_pid(pid_namespace);
  namespaces->set_net(net_namespace);
  namespaces->set_uts(uts_namespace);
  namespaces->set_ipc(ipc_namespace);
  return request;
}

v1::ExecRequest ExecOptions::ToRequest(const std::string& thread_id) const {
  v1::ExecRequest request;
  request.set_thread_id(thread_id);
  request.set_path(path);
  request.mutable_argv()->Add(argv.begin(), argv.end());
  request.mutable_env()->Add(env.begin(), env.end());
  request.mutable_labels()->insert(labels.begin(), labels.end());
  return request;
}

SyscallResult SyscallResult::FromProto(const v1::SyscallResult& result) {
  return SyscallResult{.value = result.value(),
                       .error = result.error(),
                       .error_name = result.error_name()};
}

absl::Status SyscallError(absl::string_view call, const SyscallResult& result) {
  if (result.ok()) return absl::OkStatus();
  return absl::Status(absl::ErrnoToStatusCode(result.error),
                      absl::StrCat(call, ": ", strerror(result.error)));
}

// ---------------------------------------------------------------------------
// Pointer

Pointer::Pointer(std::shared_ptr<internal::Connection> connection,
                 v1::Pointer info)
    : connection_(std::move(connection)), info_(std::move(info)) {}

Pointer::Pointer(Pointer&& other) noexcept
    : connection_(std::move(other.connection_)),
      info_(std::move(other.info_)) {}

Pointer& Pointer::operator=(Pointer&& other) noexcept {
  if (this != &other) {
    Free().IgnoreError();
    connection_ = std::move(other.connection_);
    info_ = std::move(other.info_);
  }
  return *this;
}

// Best effort: the thread may already be gone, which freed the memory.
Pointer::~Pointer() { Free().IgnoreError(); }

absl::StatusOr<std::string> Pointer::Read(uint64_t offset,
                                          uint64_t length) const {
  if (empty()) return absl::FailedPreconditionError("empty Pointer handle");
  if (length == UINT64_MAX) length = offset < size() ? size() - offset : 0;
  if (length < kMinDirect || (connection_->remote && length <= kMaxUnaryRead)) {
    // One message, whose bytes become the result without a copy.
    v1::ReadMemoryRequest request;
    request.set_pointer_id(id());
    request.set_offset(offset);
    request.set_length(length);
    return ReadUnary(*connection_, request);
  }
  std::string data(length, '\0');
  absl::Status status = ReadInto(absl::MakeSpan(data), offset);
  if (!status.ok()) return status;
  return data;
}

absl::Status Pointer::ReadInto(absl::Span<char> out, uint64_t offset) const {
  if (empty()) return absl::FailedPreconditionError("empty Pointer handle");
  v1::ReadMemoryRequest request;
  request.set_pointer_id(id());
  request.set_offset(offset);
  request.set_length(out.size());
  // Remote: the daemon cannot reach our memory; stream at once.
  if (out.size() >= kMinDirect && !connection_->remote) {
    absl::Status direct = CopyDirect(*connection_, /*to_client=*/true, id(),
                                     offset, out.size(), out.data());
    if (!ShouldStreamInstead(direct)) return direct;
  }
  if (out.size() > kMaxUnaryRead) {
    return ReadStreamedInto(*connection_, request, out.data());
  }
  absl::StatusOr<std::string> data = ReadUnary(*connection_, request);
  if (!data.ok()) return data.status();
  if (data->size() != out.size()) {
    return absl::InternalError(absl::StrCat("Memory.Read answered ",
                                            data->size(), " bytes for ",
                                            out.size()));
  }
  memcpy(out.data(), data->data(), data->size());
  return absl::OkStatus();
}

absl::Status Pointer::Write(absl::string_view data, uint64_t offset) const {
  if (empty()) return absl::FailedPreconditionError("empty Pointer handle");
  if (data.size() >= kMinDirect && !connection_->remote) {
    absl::Status direct = CopyDirect(*connection_, /*to_client=*/false, id(),
                                     offset, data.size(), data.data());
    if (!ShouldStreamInstead(direct)) return direct;
  }
  if (data.size() > kWriteChunk) {
    return WriteStreamed(*connection_, id(), data, offset);
  }
  v1::WriteMemoryRequest request;
  request.set_pointer_id(id());
  request.set_offset(offset);
  request.set_data(data.data(), data.size());
  return WriteUnary(*connection_, request);
}

absl::Status Pointer::Free() {
  if (empty()) return absl::OkStatus();
  std::shared_ptr<internal::Connection> connection = std::move(connection_);
  connection_ = nullptr;
  return FreePointer(*connection, id());
}

std::string Pointer::Release() {
  connection_ = nullptr;
  return info_.id();
}

// ---------------------------------------------------------------------------
// FileDescriptor

FileDescriptor::FileDescriptor(std::shared_ptr<internal::Connection> connection,
                               std::string thread_id, int fd)
    : connection_(std::move(connection)),
      thread_id_(std::move(thread_id)),
      fd_(fd) {}

FileDescriptor::FileDescriptor(FileDescriptor&& other) noexcept
    : connection_(std::move(other.connection_)),
      thread_id_(std::move(other.thread_id_)),
      fd_(std::exchange(other.fd_, -1)) {}

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& other) noexcept {
  if (this != &other) {
    Close().IgnoreError();
    connection_ = std::move(other.connection_);
    thread_id_ = std::move(other.thread_id_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

// Best effort: the thread may already be gone, which closed the fd.
FileDescriptor::~FileDescriptor() { Close().IgnoreError(); }

absl::StatusOr<size_t> FileDescriptor::Transfer(const char* call,
                                                int64_t number,
                                                const Pointer& buffer,
                                                size_t n) {
  if (empty()) {
    return absl::FailedPreconditionError("empty FileDescriptor handle");
  }
  if (buffer.empty() || buffer.thread_id() != thread_id_) {
    return absl::InvalidArgumentError(absl::StrCat(
        call, "(fd ", fd_, "): the buffer is not memory of the fd's thread"));
  }
  const size_t count = std::min<uint64_t>(n, buffer.size());
  absl::StatusOr<SyscallResult> result =
      CallSyscall(*connection_, thread_id_, number,
                  {fd_, buffer.arg(), static_cast<int64_t>(count)});
  if (!result.ok()) return result.status();
  absl::Status error = SyscallError(absl::StrCat(call, "(fd ", fd_, ")"), *result);
  if (!error.ok()) return error;
  return static_cast<size_t>(result->value);
}

absl::StatusOr<size_t> FileDescriptor::Read(const Pointer& buffer, size_t n) {
  return Transfer("read", SYS_read, buffer, n);
}

absl::StatusOr<size_t> FileDescriptor::Write(const Pointer& buffer, size_t n) {
  return Transfer("write", SYS_write, buffer, n);
}

absl::Status FileDescriptor::Close() {
  if (empty()) return absl::OkStatus();
  std::shared_ptr<internal::Connection> connection = std::move(connection_);
  connection_ = nullptr;
  return CloseFd(*connection, thread_id_, std::exchange(fd_, -1));
}

int FileDescriptor::Release() {
  connection_ = nullptr;
  return std::exchange(fd_, -1);
}

// ---------------------------------------------------------------------------
// SyscallBatch

SyscallBatch::SyscallBatch(std::shared_ptr<internal::Connection> connection,
                           std::string thread_id)
    : connection_(std::move(connection)), thread_id_(std::move(thread_id)) {}

size_t SyscallBatch::AddSyscall(int64_t number, std::vector<int64_t> args) {
  syscalls_.push_back(MakeSyscall(number, args));
  return syscalls_.size() - 1;
}

absl::StatusOr<std::vector<SyscallResult>> SyscallBatch::Run() {
  std::vector<SyscallResult> results;
  results.reserve(syscalls_.size());
  if (syscalls_.empty()) return results;
  grpc::ClientContext context;
  auto stream = connection_->threads->Execute(&context);
  // Requests go out from their own thread: replies must be read while
  // requests are still being written, or flow control stalls both ways.
  std::thread writer([&] {
    for (size_t start = 0; start < syscalls_.size();
         start += kSyscallsPerMessage) {
      v1::ExecuteRequest request;
      request.set_thread_id(thread_id_);
      size_t end = std::min(syscalls_.size(), start + kSyscallsPerMessage);
      request.mutable_syscalls()->Add(syscalls_.begin() + start,
                                      syscalls_.begin() + end);
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  v1::ExecuteResponse response;
  while (stream->Read(&response)) {
    for (const v1::SyscallResult& result : response.results()) {
      results.push_back(SyscallResult::FromProto(result));
    }
  }
  writer.join();
  absl::Status status = FromGrpcStatus(stream->Finish());
  if (!status.ok()) return status;
  if (results.size() != syscalls_.size()) {
    return absl::InternalError(absl::StrCat("Execute answered ", results.size(),
                                            " of ", syscalls_.size(),
                                            " syscalls"));
  }
  return results;
}

// ---------------------------------------------------------------------------
// Thread

Thread::Thread(std::shared_ptr<internal::Connection> connection,
               v1::ThreadInfo info, bool owned)
    : connection_(std::move(connection)),
      info_(std::move(info)),
      owned_(owned) {}

Thread::Thread(Thread&& other) noexcept
    : connection_(std::move(other.connection_)),
      info_(std::move(other.info_)),
      owned_(std::exchange(other.owned_, false)) {}

Thread& Thread::operator=(Thread&& other) noexcept {
  if (this != &other) {
    ExitIfOwned();
    connection_ = std::move(other.connection_);
    info_ = std::move(other.info_);
    owned_ = std::exchange(other.owned_, false);
  }
  return *this;
}

Thread::~Thread() { ExitIfOwned(); }

absl::StatusOr<std::vector<v1::FdInfo>> Thread::ListFds() const {
  if (empty()) return absl::FailedPreconditionError("empty Thread handle");
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::ListFdsRequest request;
  request.set_thread_id(id());
  v1::ListFdsResponse response;
  absl::Status status =
      FromGrpcStatus(connection_->files->ListFds(&context, request, &response));
  if (!status.ok()) return status;
  return std::vector<v1::FdInfo>(response.fds().begin(), response.fds().end());
}

FileDescriptor Thread::AdoptFd(int number) const {
  return FileDescriptor(connection_, id(), number);
}

void Thread::ExitIfOwned() {
  if (!empty() && owned_ && !info_.persistent()) Exit().IgnoreError();
}

absl::StatusOr<SyscallResult> Thread::RawSyscall(
    int64_t number, std::vector<int64_t> args) const {
  if (empty()) return absl::FailedPreconditionError("empty Thread handle");
  return CallSyscall(*connection_, id(), number, args);
}

SyscallBatch Thread::Batch() const { return SyscallBatch(connection_, id()); }

absl::StatusOr<Pointer> Thread::Allocate(uint64_t size,
                                         v1::Protection protection) const {
  if (empty()) return absl::FailedPreconditionError("empty Thread handle");
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::AllocateRequest request;
  request.set_thread_id(id());
  request.set_size(size);
  request.set_protection(protection);
  v1::AllocateResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->memory->Allocate(&context, request, &response));
  if (!status.ok()) return status;
  return Pointer(connection_, std::move(*response.mutable_pointer()));
}

absl::StatusOr<Pointer> Thread::PutString(absl::string_view text) const {
  absl::StatusOr<Pointer> pointer = Allocate(text.size() + 1);
  if (!pointer.ok()) return pointer.status();
  std::string terminated(text);
  terminated.push_back('\0');
  if (absl::Status written = pointer->Write(terminated); !written.ok()) {
    return written;
  }
  return pointer;
}

absl::StatusOr<int64_t> Thread::Checked(absl::string_view call, int64_t number,
                                        std::vector<int64_t> args) const {
  absl::StatusOr<SyscallResult> result = RawSyscall(number, std::move(args));
  if (!result.ok()) return result.status();
  if (absl::Status error = SyscallError(call, *result); !error.ok()) {
    return error;
  }
  return result->value;
}

absl::StatusOr<FileDescriptor> Thread::Open(absl::string_view path, int flags,
                                            mode_t mode) const {
  absl::StatusOr<Pointer> name = PutString(path);
  if (!name.ok()) return name.status();
  absl::StatusOr<int64_t> fd =
      Checked(absl::StrCat("openat(", path, ")"), SYS_openat,
              {AT_FDCWD, name->arg(), flags, static_cast<int64_t>(mode)});
  if (!fd.ok()) return fd.status();
  return FileDescriptor(connection_, id(), static_cast<int>(*fd));
}

absl::StatusOr<std::pair<FileDescriptor, FileDescriptor>> Thread::FdPair(
    const Pointer& fds) const {
  absl::StatusOr<std::string> raw = fds.Read(0, 2 * sizeof(int));
  if (!raw.ok()) return raw.status();
  int numbers[2];
  memcpy(numbers, raw->data(), sizeof(numbers));
  return std::make_pair(FileDescriptor(connection_, id(), numbers[0]),
                        FileDescriptor(connection_, id(), numbers[1]));
}

absl::StatusOr<std::pair<FileDescriptor, FileDescriptor>> Thread::Pipe(
    int flags) const {
  absl::StatusOr<Pointer> fds = Allocate(2 * sizeof(int));
  if (!fds.ok()) return fds.status();
  absl::StatusOr<int64_t> done =
      Checked("pipe2", SYS_pipe2, {fds->arg(), flags});
  if (!done.ok()) return done.status();
  return FdPair(*fds);
}

absl::StatusOr<std::pair<FileDescriptor, FileDescriptor>> Thread::Socketpair(
    int domain, int type, int protocol) const {
  absl::StatusOr<Pointer> fds = Allocate(2 * sizeof(int));
  if (!fds.ok()) return fds.status();
  absl::StatusOr<int64_t> done = Checked(
      "socketpair", SYS_socketpair, {domain, type, protocol, fds->arg()});
  if (!done.ok()) return done.status();
  return FdPair(*fds);
}

absl::StatusOr<FileDescriptor> Thread::EpollCreate(int flags) const {
  absl::StatusOr<int64_t> fd =
      Checked("epoll_create1", SYS_epoll_create1, {flags});
  if (!fd.ok()) return fd.status();
  return FileDescriptor(connection_, id(), static_cast<int>(*fd));
}

absl::Status Thread::Mount(absl::string_view source, absl::string_view target,
                           absl::string_view fstype, unsigned long flags,
                           absl::string_view data) const {
  absl::StatusOr<Pointer> source_arg = PutString(source);
  if (!source_arg.ok()) return source_arg.status();
  absl::StatusOr<Pointer> target_arg = PutString(target);
  if (!target_arg.ok()) return target_arg.status();
  absl::StatusOr<Pointer> fstype_arg = PutString(fstype);
  if (!fstype_arg.ok()) return fstype_arg.status();
  absl::StatusOr<Pointer> data_arg = PutString(data);
  if (!data_arg.ok()) return data_arg.status();
  return Checked(absl::StrCat("mount(", source, ", ", target, ", ", fstype, ")"),
                 SYS_mount,
                 {source_arg->arg(), target_arg->arg(), fstype_arg->arg(),
                  static_cast<int64_t>(flags), data_arg->arg()})
      .status();
}

absl::Status Thread::Unshare(int flags) const {
  return Checked(absl::StrCat("unshare(0x", absl::Hex(flags), ")"),
                 SYS_unshare, {flags})
      .status();
}

absl::Status Thread::Chdir(absl::string_view path) const {
  absl::StatusOr<Pointer> name = PutString(path);
  if (!name.ok()) return name.status();
  return Checked(absl::StrCat("chdir(", path, ")"), SYS_chdir, {name->arg()})
      .status();
}

absl::StatusOr<exec::v1::CallResponse> Thread::Call(
    const std::string& function, const std::vector<uint64_t>& args) const {
  exec::v1::Target target;
  target.set_thread_id(id());
  return internal::ExecCall(*connection_, target, function, args);
}

absl::StatusOr<exec::v1::InjectLibraryResponse> Thread::InjectLibrary(
    const std::string& path) const {
  exec::v1::Target target;
  target.set_thread_id(id());
  return internal::ExecInjectLibrary(*connection_, target, path);
}

absl::StatusOr<pid_t> Thread::GetPid() const {
  absl::StatusOr<int64_t> pid = Checked("getpid", SYS_getpid, {});
  if (!pid.ok()) return pid.status();
  return static_cast<pid_t>(*pid);
}

absl::StatusOr<FileDescriptor> Thread::TransferFd(const FileDescriptor& fd,
                                                  const Thread& to) const {
  if (empty() || to.empty() || fd.empty()) {
    return absl::FailedPreconditionError("TransferFd on an empty handle");
  }
  if (fd.thread_id() != id()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TransferFd: fd ", fd.number(), " belongs to thread ", fd.thread_id(),
        ", not ", id()));
  }
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::TransferFdRequest request;
  request.set_source_thread_id(fd.thread_id());
  request.set_source_fd(fd.number());
  request.set_target_thread_id(to.id());
  v1::TransferFdResponse response;
  absl::Status status = FromGrpcStatus(
      connection_->files->TransferFd(&context, request, &response));
  if (!status.ok()) return status;
  return FileDescriptor(connection_, to.id(), response.fd());
}

namespace {

// One exchange on the daemon's fd side socket: the token (with `fd_to_send`
// as SCM_RIGHTS when >= 0), then the daemon's int32 reply and any fd riding
// with it (*fd_received, -1 if none). `reported_path` is the side socket the
// daemon named; it is used only if it is next to `connection`'s socket and
// served by the same uid (ConnectToSideSocket). `call` names the RPC in
// errors.
absl::Status SideExchange(absl::string_view call,
                          const internal::Connection& connection,
                          const std::string& reported_path,
                          const std::string& token, int fd_to_send,
                          int32_t* reply, int* fd_received) {
  *fd_received = -1;
  absl::StatusOr<UniqueFd> socket =
      ConnectToSideSocket(connection.socket_path, connection.peer.uid,
                          reported_path, internal::kShortCallTimeout);
  if (!socket.ok()) {
    return absl::Status(socket.status().code(),
                        absl::StrCat(call, ": ", socket.status().message()));
  }
  const int s = socket->get();
  const std::string path = absl::StrCat(connection.socket_path, ".fds");
  // A daemon that never answers must not hang the caller for ever.
  const timeval limit = absl::ToTimeval(internal::kShortCallTimeout);
  if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit)) != 0 ||
      setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit)) != 0) {
    return absl::InternalError(absl::StrCat(
        call, ": setsockopt(", path, ", SO_RCVTIMEO/SO_SNDTIMEO): ",
        strerror(errno)));
  }
  if (SendWithFd(s, token.data(), token.size(), fd_to_send) !=
      static_cast<ssize_t>(token.size())) {
    return absl::UnavailableError(
        absl::StrCat(call, ": sendmsg(", path, "): ", strerror(errno)));
  }
  ssize_t n = ReceiveWithFd(s, reply, sizeof(*reply), fd_received);
  if (n != static_cast<ssize_t>(sizeof(*reply))) {
    const int error = errno;
    if (*fd_received >= 0) close(*fd_received);
    *fd_received = -1;
    if (n < 0 && (error == EAGAIN || error == EWOULDBLOCK)) {
      return absl::DeadlineExceededError(absl::StrCat(
          call, ": procwarpd did not answer on ", path, " within ",
          absl::FormatDuration(internal::kShortCallTimeout)));
    }
    // The daemon closes without a reply when it refuses the token.
    return absl::PermissionDeniedError(
        absl::StrCat(call, ": the daemon refused the side socket exchange"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> Thread::ExportFd(const FileDescriptor& fd) const {
  if (empty() || fd.empty()) {
    return absl::FailedPreconditionError("ExportFd on an empty handle");
  }
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::ExportFdRequest request;
  request.set_thread_id(fd.thread_id());
  request.set_fd(fd.number());
  v1::ExportFdResponse response;
  absl::Status status =
      FromGrpcStatus(connection_->files->ExportFd(&context, request, &response));
  if (!status.ok()) return status;
  int32_t reply = -1;
  int local = -1;
  status = SideExchange("ExportFd", *connection_, response.side_socket_path(),
                        response.token(), -1, &reply, &local);
  if (!status.ok()) return status;
  if (reply < 0) {
    // The daemon's side socket was busy (EAGAIN) or the exchange timed out.
    if (local >= 0) close(local);
    SyscallResult failed;
    failed.error = -reply;
    return SyscallError("ExportFd: the side socket exchange", failed);
  }
  if (local < 0) {
    return absl::InternalError("ExportFd: the daemon's reply carried no fd");
  }
  return local;
}

absl::StatusOr<FileDescriptor> Thread::ImportFd(int local_fd, int target_fd,
                                                bool cloexec) const {
  if (empty()) return absl::FailedPreconditionError("empty Thread handle");
  if (local_fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ImportFd: local fd ", local_fd, " is not an fd"));
  }
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::ImportFdRequest request;
  request.set_thread_id(id());
  request.set_target_fd(target_fd);
  request.set_cloexec(cloexec);
  v1::ImportFdResponse response;
  absl::Status status =
      FromGrpcStatus(connection_->files->ImportFd(&context, request, &response));
  if (!status.ok()) return status;
  int32_t reply = -1;
  int unused = -1;
  status = SideExchange("ImportFd", *connection_, response.side_socket_path(),
                        response.token(), local_fd, &reply, &unused);
  if (!status.ok()) return status;
  if (unused >= 0) close(unused);
  if (reply < 0) {
    SyscallResult failed;
    failed.error = -reply;
    return SyscallError("ImportFd: installing the fd", failed);
  }
  return FileDescriptor(connection_, id(), reply);
}

absl::StatusOr<Thread> Thread::CreateChild(ThreadOptions options) const {
  if (empty()) return absl::FailedPreconditionError("empty Thread handle");
  options.parent_thread_id = id();
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::CreateThreadResponse response;
  absl::Status status = FromGrpcStatus(connection_->threads->CreateThread(
      &context, options.ToRequest(), &response));
  if (!status.ok()) return status;
  return Thread(connection_, std::move(*response.mutable_thread()),
                /*owned=*/true);
}

absl::StatusOr<Process> Thread::Exec(const ExecOptions& options) {
  if (empty()) return absl::FailedPreconditionError("empty Thread handle");
  grpc::ClientContext context;
  internal::SetTimeout(context, internal::kShortCallTimeout);
  v1::ExecResponse response;
  absl::Status status = FromGrpcStatus(connection_->threads->Exec(
      &context, options.ToRequest(id()), &response));
  if (!status.ok()) return status;
  std::shared_ptr<internal::Connection> connection = std::move(connection_);
  connection_ = nullptr;
  owned_ = false;
  return Process(std::move(connection), std::move(*response.mutable_process()),
                 /*owned=*/true);
}

absl::Status Thread::Exit(int exit_code) {
  if (empty()) return absl::OkStatus();
  std::shared_ptr<internal::Connection> connection = std::move(connection_);
  connection_ = nullptr;
  owned_ = false;
  return ExitThread(*connection, id(), exit_code);
}

std::string Thread::Release() {
  connection_ = nullptr;
  owned_ = false;
  return info_.id();
}

}  // namespace procwarp
