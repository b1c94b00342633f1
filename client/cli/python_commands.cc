// See python_commands.h.
#include "client/cli/python_commands.h"

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cc/client.h"
#include "client/cli/exec_commands.h"
#include "client/cli/output.h"

namespace procwarp::cli {
namespace {

namespace pb = exec::v1;

// The target's text for a terminal: each line escaped, the lines kept.
std::string ForTerminal(absl::string_view text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    lines.push_back(EscapeForTerminal(line));
  }
  return absl::StrJoin(lines, "\n");
}

void Write(std::ostream& out, int fd, absl::string_view text) {
  if (text.empty()) return;
  if (isatty(fd)) {
    out << ForTerminal(text);
  } else {
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  out.flush();
}

absl::StatusOr<std::string> ReadSource(const std::string& path) {
  std::stringstream buffer;
  if (path == "-") {
    buffer << std::cin.rdbuf();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", EscapeForTerminal(path)));
    buffer << in.rdbuf();
  }
  return buffer.str();
}

}  // namespace

absl::StatusOr<pb::RunPythonRequest> PyExecRequest(const PyExecOptions& options) {
  absl::StatusOr<int> pid = ParsePid(options.pid);
  if (!pid.ok()) return pid.status();
  if (options.code.has_value() == options.file.has_value()) {
    return absl::InvalidArgumentError("give the code with exactly one of -c CODE or -f FILE");
  }
  pb::RunPythonRequest request;
  request.mutable_target()->set_pid(*pid);
  if (options.code.has_value()) {
    request.set_code(*options.code);
  } else {
    absl::StatusOr<std::string> source = ReadSource(*options.file);
    if (!source.ok()) return source.status();
    request.set_code(*source);
  }
  request.set_mode(options.eval ? pb::PYTHON_MODE_EVAL : pb::PYTHON_MODE_EXEC);
  if (options.timeout_seconds.has_value()) {
    const double s = *options.timeout_seconds;
    if (!(s > 0) || s > 86400) {
      return absl::InvalidArgumentError("--timeout: seconds, more than 0");
    }
    request.set_timeout_ms(static_cast<uint32_t>(s * 1000 + 0.5));
  }
  request.set_main_thread_only(options.main_thread);
  request.set_no_wait(options.no_wait);
  request.set_override_opt_out(options.override_opt_out);
  return request;
}

absl::StatusOr<int> RunPyExec(const GlobalOptions& global, const PyExecOptions& options) {
  absl::StatusOr<pb::RunPythonRequest> request = PyExecRequest(options);
  if (!request.ok()) return request.status();
  absl::StatusOr<Client> client = Client::Connect(global.socket_path);
  if (!client.ok()) return client.status();
  absl::StatusOr<pb::RunPythonResponse> response = client->RunPython(*request);
  if (!response.ok()) return response.status();
  const bool raised = response->has_exception();
  if (global.json) {
    if (absl::Status printed = PrintJson(*response); !printed.ok()) return printed;
    return raised ? kPythonRaisedExitCode : 0;
  }
  if (response->queued()) {
    std::cout << "queued" << std::endl;
    return 0;
  }
  Write(std::cout, STDOUT_FILENO, response->stdout());
  Write(std::cerr, STDERR_FILENO, response->stderr());
  if (request->mode() == pb::PYTHON_MODE_EVAL && !raised) {
    Write(std::cout, STDOUT_FILENO, absl::StrCat(response->value_repr(), "\n"));
  }
  if (raised) {
    Write(std::cerr, STDERR_FILENO, response->exception().traceback());
    return kPythonRaisedExitCode;
  }
  return 0;
}

}  // namespace procwarp::cli
