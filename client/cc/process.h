// Handles on processes managed by procwarpd: procwarp::Process (wait, signal,
// attach, resize, remove; removes the process when destroyed unless told not
// to) and procwarp::AttachSession (the stdin/stdout/stderr stream of one
// process). Both are made by procwarp::Client; see client.h for an example.
#ifndef PROCWARP_CLIENT_CC_PROCESS_H_
#define PROCWARP_CLIENT_CC_PROCESS_H_

#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/procwarp/v1/common.pb.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp {

namespace internal {
struct Connection;
}  // namespace internal

// The exit code a shell would report for `status`: the exit code, or
// 128 + signal number for a process killed by a signal. 255 if `status` holds
// neither (the process has not exited).
int ShellExitCode(const v1::ExitStatus& status);

// "exit code 3", "killed by signal 9 (KILL)", "... (core dumped)".
std::string DescribeExitStatus(const v1::ExitStatus& status);

struct AttachOptions {
  // Skip output the daemon buffered before the attach (default: replay it).
  bool no_replay = false;
};

// One Attach stream: stdin bytes go in, output chunks and finally the exit
// status come out. Move-only; a moved-from session may only be destroyed or
// assigned to. Threading: one thread may Read() while another calls
// WriteStdin()/CloseStdin(); Cancel() may be called from any thread.
// Finish() and the destructor must not run concurrently with other calls.
class AttachSession {
 public:
  AttachSession(AttachSession&&) noexcept = default;
  // Cancels this session's own stream first if it is still open.
  AttachSession& operator=(AttachSession&& other) noexcept;
  // Cancels the stream if it is still open.
  ~AttachSession();

  const std::string& process_id() const { return process_id_; }

  // Sends bytes to the process's stdin (pipe or pty). Fails with UNAVAILABLE
  // once the stream is closed; Read() then reports why.
  absl::Status WriteStdin(absl::string_view data);

  // Closes the process's stdin pipe, or sends end-of-file to its pty.
  absl::Status CloseStdin();

  // Blocks for the next message: an output chunk (`output` set) or the exit
  // status (`exit` set, always the last message). When the stream ends
  // without one, returns the call's error (CANCELLED after Cancel(),
  // UNAVAILABLE if the daemon went away); reading past the end gives
  // OUT_OF_RANGE.
  absl::StatusOr<v1::AttachResponse> Read();

  // Ends the stream early; a blocked Read() returns CANCELLED.
  void Cancel();

  // Half-closes the stream, discards unread messages until the daemon ends
  // it, and returns the call's final status. After an exit status has been
  // read this returns promptly; otherwise it waits for the process to exit
  // (call Cancel() first to stop at once).
  absl::Status Finish();

 private:
  friend class Process;
  using Stream = grpc::ClientReaderWriter<v1::AttachRequest, v1::AttachResponse>;

  AttachSession(std::string process_id,
                std::unique_ptr<grpc::ClientContext> context,
                std::unique_ptr<Stream> stream);
  // Records the call's status once the daemon has ended the stream.
  absl::Status FinishAfterLastRead();
  // Cancels and finishes a stream that is still open; no-op otherwise.
  void Abandon();

  std::string process_id_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<Stream> stream_;
  bool writes_done_ = false;
  bool reads_done_ = false;
  std::optional<absl::Status> final_status_;
};

// A process the daemon manages for us. Move-only. A handle made by
// Client::Spawn owns its process: destroying it kills the process if it
// still runs and tells the daemon to forget it (best effort, errors are
// ignored), unless Detach() or Release() was called first. Handles made by
// Client::Open do not own their process.
class Process {
 public:
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  ~Process();

  // Empty after Release() or a move; every call on an empty handle fails with
  // FAILED_PRECONDITION.
  bool empty() const { return connection_ == nullptr; }
  bool owned() const { return owned_; }
  const std::string& id() const { return info_.id(); }
  int pid() const { return info_.pid(); }
  // The record as of the last Spawn/Open/Wait/Refresh.
  const v1::ProcessInfo& info() const { return info_; }

  // Waits for the process to exit and returns how it ended.
  // DEADLINE_EXCEEDED when `timeout` passes first (the process keeps running).
  absl::StatusOr<v1::ExitStatus> Wait(
      std::optional<absl::Duration> timeout = std::nullopt);

  // Fetches the current record from the daemon (and updates info()).
  absl::StatusOr<v1::ProcessInfo> Refresh();

  // Sends signal number `signal` (e.g. SIGTERM) to the process.
  absl::Status Signal(int signal);

  // Opens the process's stdio stream.
  absl::StatusOr<AttachSession> Attach(const AttachOptions& options = {});

  // Sets the window size of the process's pty.
  absl::Status ResizePty(uint32_t rows, uint32_t cols);

  // Tells the daemon to forget the process. FAILED_PRECONDITION while it
  // runs unless `force`, which kills it first. The handle stays usable for
  // id()/info() but no longer owns anything.
  absl::Status Remove(bool force = false);

  // Keeps the process (running or exited) after this handle is destroyed;
  // the handle stays usable.
  void Detach() { owned_ = false; }

  // Gives up the handle without removing the process and returns its id
  // (for Client::Open later). The handle becomes empty.
  std::string Release();

 private:
  friend class Client;
  friend class Thread;  // Thread::Exec turns a thread into a Process.

  Process(std::shared_ptr<internal::Connection> connection,
          v1::ProcessInfo info, bool owned);
  absl::Status CheckNotEmpty() const;
  // Best-effort forced removal used by the destructor and move assignment.
  void RemoveIfOwned();

  std::shared_ptr<internal::Connection> connection_;
  v1::ProcessInfo info_;
  bool owned_ = false;
};

}  // namespace procwarp

#endif  // PROCWARP_CLIENT_CC_PROCESS_H_
