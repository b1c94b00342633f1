// Example for the procwarp C++ client: spawns `/bin/echo hello` with stdout
// piped, attaches to it, prints what it writes and how it exited.
// Usage: spawn_and_wait [SOCKET_PATH]
#include <iostream>
#include <string>

#include "client/cc/client.h"

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "spawn_and_wait: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<procwarp::Client> client =
      procwarp::Client::Connect(argc > 1 ? argv[1] : "");
  if (!client.ok()) return Fail(client.status());

  absl::StatusOr<procwarp::Process> process = client->Spawn({
      .argv = {"/bin/echo", "hello"},
      .stdout_mode = procwarp::Stdio::kPipe,
  });
  if (!process.ok()) return Fail(process.status());

  absl::StatusOr<procwarp::AttachSession> session = process->Attach();
  if (!session.ok()) return Fail(session.status());
  while (true) {
    absl::StatusOr<procwarp::v1::AttachResponse> next = session->Read();
    if (!next.ok()) return Fail(next.status());
    if (next->has_exit()) {
      std::cout << "process " << process->id() << " (pid " << process->pid()
                << ") ended: " << procwarp::DescribeExitStatus(next->exit())
                << "\n";
      return procwarp::ShellExitCode(next->exit());
    }
    std::cout << next->output().data() << std::flush;
  }
  // `process` owns the child: leaving main tells the daemon to forget it.
}
