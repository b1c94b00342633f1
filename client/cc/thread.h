// Typed handles on procwarpd's remote threads, in the spirit of rsyscall:
// procwarp::Thread (a process running procwarp-agent that we drive syscall by
// syscall, or a thread of an existing process the daemon attached to with
// ptrace), procwarp::Pointer (memory allocated inside a thread) and
// procwarp::FileDescriptor (an fd of a thread). All three are RAII: they exit
// (or, attached, detach from) the thread, free the memory and close the fd
// when destroyed, unless released. Made by procwarp::Client::CreateThread and
// Client::AttachThread (see client.h).
//
// Example: read /etc/hostname inside a fresh thread.
//
//   absl::StatusOr<procwarp::Client> client = procwarp::Client::Connect();
//   if (!client.ok()) return Fail(client.status());
//   absl::StatusOr<procwarp::Thread> t = client->CreateThread();
//   if (!t.ok()) return Fail(t.status());
//   absl::StatusOr<procwarp::FileDescriptor> fd =
//       t->Open("/etc/hostname", O_RDONLY);
//   if (!fd.ok()) return Fail(fd.status());  // "openat(/etc/hostname): ..."
//   absl::StatusOr<procwarp::Pointer> buf = t->Allocate(4096);
//   if (!buf.ok()) return Fail(buf.status());
//   absl::StatusOr<size_t> n = fd->Read(*buf);
//   if (!n.ok()) return Fail(n.status());
//   absl::StatusOr<std::string> text = buf->Read(0, *n);
//   // Leaving the scope closes the fd, frees `buf` and exits the thread.
//
// Child threads (Thread::CreateChild) inherit their parent's namespaces and
// fds, and Thread::Exec turns a thread into a procwarp::Process that keeps
// the fds it had without close-on-exec (e.g. a pipe dup3()ed onto 0 or 1).
//
// Errors: Thread::Syscall and SyscallBatch::Run return a failed syscall as a
// SyscallResult carrying its errno (only the RPC failing is an absl::Status).
// The convenience wrappers (Open, Pipe, Mount, ...) turn errno into an
// absl::Status with the matching code, naming the call:
// "openat(/nope): No such file or directory" is NOT_FOUND.
//
// Threading: different handles may be used from different threads at once;
// one handle object is for one thread at a time.
#ifndef PROCWARP_CLIENT_CC_THREAD_H_
#define PROCWARP_CLIENT_CC_THREAD_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/cc/process.h"
#include "proto/procwarp/exec/v1/exec.pb.h"
#include "proto/procwarp/v1/files.pb.h"
#include "proto/procwarp/v1/memory.pb.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp {

namespace internal {
struct Connection;
}  // namespace internal

// How to create a thread (see v1::CreateThreadRequest).
struct ThreadOptions {
  // Keep the thread after this connection ends (and after the Thread handle
  // is destroyed); reattach with Client::OpenThread(id).
  bool persistent = false;
  // New namespaces. A new user namespace maps 0 inside to the caller.
  bool user_namespace = false;
  bool mount_namespace = false;
  bool pid_namespace = false;
  bool net_namespace = false;
  bool uts_namespace = false;
  bool ipc_namespace = false;
  std::map<std::string, std::string> labels;
  // Clone from this thread of ours instead of from the daemon (rsyscall's
  // ChildThread): inherits its credentials, namespaces and a copy of its fd
  // table (or the table itself with `share_fd_table`). See
  // Thread::CreateChild.
  std::string parent_thread_id;
  bool share_fd_table = false;

  v1::CreateThreadRequest ToRequest() const;
};

// What Thread::Exec runs.
struct ExecOptions {
  // argv[0] is also the program unless `path` is set. No PATH search.
  std::vector<std::string> argv;
  std::string path;
  // The exact environment, "NAME=value".
  std::vector<std::string> env;
  // Labels of the new managed process.
  std::map<std::string, std::string> labels;

  v1::ExecRequest ToRequest(const std::string& thread_id) const;
};

// What one syscall returned. A failed call has value -1 and error != 0.
struct SyscallResult {
  int64_t value = 0;
  int error = 0;
  // "EBADF" when failed, else empty.
  std::string error_name;

  bool ok() const { return error == 0; }
  static SyscallResult FromProto(const v1::SyscallResult& result);
};

// The absl::Status for a failed syscall: code from the errno, message
// "CALL: strerror" (e.g. "openat(/nope): No such file or directory").
// OK when `result` succeeded.
absl::Status SyscallError(absl::string_view call, const SyscallResult& result);

// Memory inside a thread (Memory.Allocate). Move-only; frees the memory when
// destroyed unless Release()d. Reads and writes are bounds-checked by the
// daemon (OUT_OF_RANGE).
class Pointer {
 public:
  Pointer(Pointer&& other) noexcept;
  Pointer& operator=(Pointer&& other) noexcept;
  ~Pointer();

  bool empty() const { return connection_ == nullptr; }
  const std::string& id() const { return info_.id(); }
  const std::string& thread_id() const { return info_.thread_id(); }
  // The address inside the thread, for syscall arguments.
  uint64_t address() const { return info_.address(); }
  int64_t arg() const { return static_cast<int64_t>(info_.address()); }
  uint64_t size() const { return info_.size(); }

  // `length` bytes at `offset` (default: to the end). Large transfers go
  // straight between the thread's memory and this process when the daemon
  // is local and allows it (Memory.ReadToClient / WriteFromClient), else
  // they stream in chunks.
  absl::StatusOr<std::string> Read(uint64_t offset = 0,
                                   uint64_t length = UINT64_MAX) const;
  // Reads `out.size()` bytes at `offset` into `out`, by the same paths as
  // Read. For large or repeated reads into memory the caller keeps: a new
  // buffer's first-touch page faults can cost more than the transfer
  // itself (docs/remote.md, "Performance").
  absl::Status ReadInto(absl::Span<char> out, uint64_t offset = 0) const;
  // Writes `data` at `offset` (large writes as for Read).
  absl::Status Write(absl::string_view data, uint64_t offset = 0) const;

  // Unmaps the memory now; the handle becomes empty.
  absl::Status Free();
  // Keeps the memory; returns the handle id. The handle becomes empty.
  std::string Release();

 private:
  friend class Thread;
  Pointer(std::shared_ptr<internal::Connection> connection, v1::Pointer info);

  std::shared_ptr<internal::Connection> connection_;
  v1::Pointer info_;
};

// A file descriptor of a thread. Move-only; closes it (Files.CloseFd) when
// destroyed unless Release()d.
class FileDescriptor {
 public:
  FileDescriptor(FileDescriptor&& other) noexcept;
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  ~FileDescriptor();

  bool empty() const { return connection_ == nullptr; }
  int number() const { return fd_; }
  const std::string& thread_id() const { return thread_id_; }

  // read(2) into `buffer` (memory of the same thread), at most `n` bytes
  // (default: the whole buffer); returns the count read.
  absl::StatusOr<size_t> Read(const Pointer& buffer, size_t n = SIZE_MAX);
  // write(2) of the first `n` bytes of `buffer` (default: all of it).
  absl::StatusOr<size_t> Write(const Pointer& buffer, size_t n = SIZE_MAX);

  // Closes the fd now; the handle becomes empty.
  absl::Status Close();
  // Keeps the fd open; returns its number. The handle becomes empty.
  int Release();

 private:
  friend class Thread;
  FileDescriptor(std::shared_ptr<internal::Connection> connection,
                 std::string thread_id, int fd);
  absl::StatusOr<size_t> Transfer(const char* call, int64_t number,
                                  const Pointer& buffer, size_t n);

  std::shared_ptr<internal::Connection> connection_;
  std::string thread_id_;
  int fd_ = -1;
};

// Syscalls collected and then run together through the pipelined Execute
// stream. Made by Thread::Batch(); one-shot: Run() once.
//
//   procwarp::SyscallBatch batch = t.Batch();
//   for (int i = 0; i < 1000; ++i) batch.Add(SYS_getpid);
//   absl::StatusOr<std::vector<procwarp::SyscallResult>> results = batch.Run();
class SyscallBatch {
 public:
  // Appends a syscall; returns its index in Run()'s results.
  template <typename... Args>
  size_t Add(int64_t number, Args... args) {
    return AddSyscall(number, {static_cast<int64_t>(args)...});
  }
  size_t AddSyscall(int64_t number, std::vector<int64_t> args);
  size_t size() const { return syscalls_.size(); }

  // Runs every syscall in order and returns their results, in order. Failed
  // syscalls are results; the status is an error only if the stream failed.
  absl::StatusOr<std::vector<SyscallResult>> Run();

 private:
  friend class Thread;
  SyscallBatch(std::shared_ptr<internal::Connection> connection,
               std::string thread_id);

  std::shared_ptr<internal::Connection> connection_;
  std::string thread_id_;
  std::vector<v1::Syscall> syscalls_;
};

// A thread: a process running procwarp-agent. Move-only. A handle made by
// Client::CreateThread owns its thread: destroying it exits the thread
// (Threads.ExitThread, best effort) unless the thread is persistent or the
// handle was Release()d. Handles made by Client::OpenThread own nothing.
class Thread {
 public:
  Thread(Thread&& other) noexcept;
  Thread& operator=(Thread&& other) noexcept;
  ~Thread();

  bool empty() const { return connection_ == nullptr; }
  const std::string& id() const { return info_.id(); }
  // Pid in the daemon's pid namespace.
  pid_t pid() const { return info_.pid(); }
  const v1::ThreadInfo& info() const { return info_; }

  // One raw syscall: Syscall(SYS_close, 3). A failed syscall is a result.
  template <typename... Args>
  absl::StatusOr<SyscallResult> Syscall(int64_t number, Args... args) const {
    return RawSyscall(number, {static_cast<int64_t>(args)...});
  }
  absl::StatusOr<SyscallResult> RawSyscall(int64_t number,
                                           std::vector<int64_t> args) const;

  // A batch for the pipelined Execute stream (see SyscallBatch).
  SyscallBatch Batch() const;

  // Fresh anonymous memory in the thread.
  absl::StatusOr<Pointer> Allocate(
      uint64_t size,
      v1::Protection protection = v1::PROTECTION_READ_WRITE) const;
  // `text` and a terminating NUL in fresh memory, for path arguments.
  absl::StatusOr<Pointer> PutString(absl::string_view text) const;

  // openat(AT_FDCWD, path, flags, mode).
  absl::StatusOr<FileDescriptor> Open(absl::string_view path, int flags,
                                      mode_t mode = 0) const;
  // pipe2(flags): {read end, write end}.
  absl::StatusOr<std::pair<FileDescriptor, FileDescriptor>> Pipe(
      int flags = 0) const;
  absl::StatusOr<std::pair<FileDescriptor, FileDescriptor>> Socketpair(
      int domain, int type, int protocol = 0) const;
  // epoll_create1(flags).
  absl::StatusOr<FileDescriptor> EpollCreate(int flags = 0) const;
  absl::Status Mount(absl::string_view source, absl::string_view target,
                     absl::string_view fstype, unsigned long flags = 0,
                     absl::string_view data = "") const;
  absl::Status Unshare(int flags) const;
  absl::Status Chdir(absl::string_view path) const;
  // getpid() as the thread sees it (1 in a new pid namespace).
  absl::StatusOr<pid_t> GetPid() const;

  // Attached threads (Client::AttachThread): Client::Call and
  // Client::InjectLibrary run through this attachment (no second attach;
  // the process stays attached afterwards). Agent threads answer
  // FAILED_PRECONDITION.
  absl::StatusOr<exec::v1::CallResponse> Call(
      const std::string& function, const std::vector<uint64_t>& args = {}) const;
  absl::StatusOr<exec::v1::InjectLibraryResponse> InjectLibrary(
      const std::string& path) const;

  // The thread's fds with what /proc says of them (Files.ListFds).
  absl::StatusOr<std::vector<v1::FdInfo>> ListFds() const;

  // A handle on fd `number` the thread already has (e.g. one of an attached
  // process's own fds). It closes the fd when destroyed: Release() it to
  // leave the fd open, as for an attached process's fds you only borrow.
  FileDescriptor AdoptFd(int number) const;

  // Copies `fd` (an fd of this thread) into thread `to`, at the lowest free
  // number there. This thread keeps its fd.
  absl::StatusOr<FileDescriptor> TransferFd(const FileDescriptor& fd,
                                            const Thread& to) const;

  // Local clients only (the fd crosses over the daemon's side socket with
  // SCM_RIGHTS): a copy of `fd` (an fd of this thread) as a close-on-exec fd
  // of the calling process, which the caller must close.
  absl::StatusOr<int> ExportFd(const FileDescriptor& fd) const;
  // Local clients only: a copy of `local_fd` (an fd of the calling process)
  // installed in this thread at `target_fd` (replacing whatever is open
  // there), or at the lowest free number when `target_fd` is -1.
  absl::StatusOr<FileDescriptor> ImportFd(int local_fd, int target_fd = -1,
                                          bool cloexec = false) const;

  // A new thread cloned from this one (`options.parent_thread_id` is set to
  // this thread); the returned handle owns it.
  absl::StatusOr<Thread> CreateChild(ThreadOptions options = {}) const;

  // execve() in the thread: it becomes a managed process (same pid; it keeps
  // the fds without close-on-exec as its stdio) and this handle becomes
  // empty. The returned Process owns it (see process.h). A failed execve is
  // an error ("execve ...: No such file or directory") and leaves the
  // thread, and this handle, as they were.
  absl::StatusOr<Process> Exec(const ExecOptions& options);

  // Ends the thread now (exit_group(exit_code)); the handle becomes empty.
  absl::Status Exit(int exit_code = 0);
  // Keeps the thread; returns its id. The handle becomes empty. A thread that
  // is not persistent still ends when this client's connection does.
  std::string Release();

 private:
  friend class Client;
  Thread(std::shared_ptr<internal::Connection> connection, v1::ThreadInfo info,
         bool owned);
  // An fd handle for `result`, or the error named after `call`.
  absl::StatusOr<FileDescriptor> FdFromResult(absl::string_view call,
                                              const SyscallResult& result) const;
  // Runs a syscall and turns its errno into a status naming `call`.
  absl::StatusOr<int64_t> Checked(absl::string_view call, int64_t number,
                                  std::vector<int64_t> args) const;
  // The two ints a pipe2/socketpair call stored at `fds`, as handles.
  absl::StatusOr<std::pair<FileDescriptor, FileDescriptor>> FdPair(
      const Pointer& fds) const;
  void ExitIfOwned();

  std::shared_ptr<internal::Connection> connection_;
  v1::ThreadInfo info_;
  bool owned_ = false;
};

}  // namespace procwarp

#endif  // PROCWARP_CLIENT_CC_THREAD_H_
