// snapshots_peer: one Snapshots.PythonStack call from a process that first
// becomes another user (the uid-65534 side of python_stack_test).
//
//   snapshots_peer --socket S --uid U --gid G stack|native-stack PID
//
// Prints one line: "OK <functions>" (the main thread's Python functions,
// outermost first, comma-separated) or "<CODE> <message>". native-stack
// asks for the native frames too (which stops the target).
#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cc/client.h"
#include "tests/integration/peer_args.h"

int main(int argc, char** argv) {
  procwarp::testing::PeerArgs peer = procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  int pid = 0;
  if ((peer.op != "stack" && peer.op != "native-stack") || peer.rest.size() != 1 ||
      !absl::SimpleAtoi(peer.rest[0], &pid)) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }
  absl::StatusOr<procwarp::Client> client = procwarp::Client::Connect(peer.socket_path);
  absl::Status status = client.status();
  std::string functions;
  if (client.ok()) {
    procwarp::snapshots::v1::PythonStackRequest request;
    request.set_pid(pid);
    request.set_locals(true);
    request.set_native(peer.op == "native-stack");
    auto stack = client->PythonStack(request);
    status = stack.status();
    if (stack.ok()) {
      for (const auto& thread : stack->threads()) {
        if (!thread.is_main()) continue;
        for (const auto& frame : thread.frames()) {
          if (frame.is_native()) continue;
          absl::StrAppend(&functions, functions.empty() ? "" : ",", frame.function());
        }
      }
    }
  }
  if (status.ok()) {
    printf("OK %s\n", functions.c_str());
  } else {
    printf("%s %s\n", absl::StatusCodeToString(status.code()).c_str(),
           std::string(status.message()).c_str());
  }
  return 0;
}
