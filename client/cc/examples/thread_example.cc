// Example for procwarp's remote threads: creates a thread, opens
// /etc/hostname inside it, reads it into thread memory and prints it, then
// sends a message through a pipe made in the thread and runs a small batch
// of syscalls. Everything is released when the handles go out of scope.
// Usage: thread_example [SOCKET_PATH]
#include <fcntl.h>
#include <sys/syscall.h>

#include <iostream>
#include <string>

#include "client/cc/client.h"

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "thread_example: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<procwarp::Client> client =
      procwarp::Client::Connect(argc > 1 ? argv[1] : "");
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<procwarp::Thread> thread = client->CreateThread();
  if (!thread.ok()) return Fail(thread.status());
  std::cout << "thread " << thread->id() << " (pid " << thread->pid() << ")\n";

  // open + read: the file's bytes land in the thread's memory first.
  absl::StatusOr<procwarp::FileDescriptor> file =
      thread->Open("/etc/hostname", O_RDONLY | O_CLOEXEC);
  if (!file.ok()) return Fail(file.status());
  absl::StatusOr<procwarp::Pointer> buffer = thread->Allocate(4096);
  if (!buffer.ok()) return Fail(buffer.status());
  absl::StatusOr<size_t> n = file->Read(*buffer);
  if (!n.ok()) return Fail(n.status());
  absl::StatusOr<std::string> hostname = buffer->Read(0, *n);
  if (!hostname.ok()) return Fail(hostname.status());
  std::cout << "hostname: " << *hostname;

  // A pipe inside the thread: write a message in, read it back out.
  auto pipe = thread->Pipe(O_CLOEXEC);
  if (!pipe.ok()) return Fail(pipe.status());
  if (absl::Status s = buffer->Write("through the pipe"); !s.ok()) return Fail(s);
  absl::StatusOr<size_t> written = pipe->second.Write(*buffer, 16);
  if (!written.ok()) return Fail(written.status());
  absl::StatusOr<procwarp::Pointer> into = thread->Allocate(64);
  if (!into.ok()) return Fail(into.status());
  absl::StatusOr<size_t> got = pipe->first.Read(*into);
  if (!got.ok()) return Fail(got.status());
  absl::StatusOr<std::string> message = into->Read(0, *got);
  if (!message.ok()) return Fail(message.status());
  std::cout << "pipe: " << *message << "\n";

  // A failed raw syscall is a result, not an error.
  absl::StatusOr<procwarp::SyscallResult> closed =
      thread->Syscall(SYS_close, 9999);
  if (!closed.ok()) return Fail(closed.status());
  std::cout << "close(9999): " << closed->value << " " << closed->error_name
            << "\n";

  // Pipelined: many syscalls, one round of messages.
  procwarp::SyscallBatch batch = thread->Batch();
  for (int i = 0; i < 100; ++i) batch.Add(SYS_getpid);
  absl::StatusOr<std::vector<procwarp::SyscallResult>> results = batch.Run();
  if (!results.ok()) return Fail(results.status());
  std::cout << "batch: " << results->size() << " getpids, last "
            << results->back().value << "\n";
  return 0;
}
