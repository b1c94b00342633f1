// exec_peer: one Exec call against procwarpd from a process that first
// becomes another user (the uid-65534 side of tests/integration/exec_test).
// Privileges are dropped before the client library starts any thread.
//
//   exec_peer --socket S --uid U --gid G OP [ARGS...]
//   OP: call PID FUNCTION [ARGS...] | inject PID PATH | unload HANDLE |
//       doctor PID | python PID CODE
//
// Prints one line: "OK <result>" or "<CODE> <message>", CODE being the status
// code's name. <result>: the return value (or "crash SIGNAME"), the handle,
// nothing, the code's stdout (python; newlines as "|"), or for doctor "can_call=B can_inject=B exe=PATH" followed by one
// "NAME=VERDICT" per target check.
#include <grp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cc/client.h"
#include "tests/integration/peer_args.h"

namespace {

int Print(const absl::Status& status, const std::string& result = "") {
  if (status.ok()) {
    printf("OK %s\n", result.c_str());
  } else {
    printf("%s %s\n", absl::StatusCodeToString(status.code()).c_str(),
           std::string(status.message()).c_str());
  }
  return 0;
}

int Run(const procwarp::Client& client, const std::vector<std::string>& args) {
  const std::string& op = args[0];
  int pid = 0;
  if (args.size() > 1) (void)absl::SimpleAtoi(args[1], &pid);
  if (op == "call" && args.size() >= 3) {
    std::vector<uint64_t> values;
    for (size_t i = 3; i < args.size(); ++i) {
      uint64_t v = 0;
      (void)absl::SimpleAtoi(args[i], &v);
      values.push_back(v);
    }
    auto r = client.Call(pid, args[2], values);
    if (!r.ok()) return Print(r.status());
    return Print(absl::OkStatus(), r->has_crash()
                                       ? "crash " + r->crash().signal_name()
                                       : absl::StrCat(r->return_value()));
  }
  if (op == "inject" && args.size() == 3) {
    auto r = client.InjectLibrary(pid, args[2]);
    return Print(r.status(), r.ok() ? r->handle() : "");
  }
  if (op == "unload" && args.size() == 2) return Print(client.UnloadLibrary(args[1]));
  if (op == "doctor" && args.size() == 2) {
    auto r = client.Preflight(pid);
    if (!r.ok()) return Print(r.status());
    std::string out = absl::StrCat("can_call=", r->can_call(),
                                   " can_inject=", r->can_inject(),
                                   " exe=", r->facts().exe());
    for (const auto& check : r->target()) {
      absl::StrAppend(&out, " ", check.name(), "=",
                      procwarp::exec::v1::Verdict_Name(check.verdict()));
    }
    return Print(absl::OkStatus(), out);
  }
  if (op == "python" && args.size() == 3) {
    procwarp::exec::v1::RunPythonRequest request;
    request.mutable_target()->set_pid(pid);
    request.set_code(args[2]);
    request.set_timeout_ms(20000);
    auto r = client.RunPython(request);
    if (!r.ok()) return Print(r.status());
    std::string out = r->stdout();
    for (char& c : out) {
      if (c == '\n') c = '|';
    }
    return Print(absl::OkStatus(), out);
  }
  fprintf(stderr, "bad arguments\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  procwarp::testing::PeerArgs peer =
      procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  absl::StatusOr<procwarp::Client> client =
      procwarp::Client::Connect(peer.socket_path);
  if (!client.ok()) return Print(client.status());
  std::vector<std::string> args = {peer.op};
  args.insert(args.end(), peer.rest.begin(), peer.rest.end());
  return Run(*client, args);
}
