// The procwarp CLI's subcommands (see commands.h).
#include "client/cli/commands.h"
#include "client/cli/target.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cc/client.h"
#include "client/cli/attach_io.h"
#include "client/cli/output.h"
#include "client/cli/process_id.h"
#include "client/cli/signals.h"
#include "client/cli/terminal.h"

extern char** environ;

namespace procwarp::cli {
namespace {

std::vector<std::string> OwnEnvironment() {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    env.emplace_back(*entry);
  }
  return env;
}

// The NAME part of "NAME=value" (all of it when there is no '=').
absl::string_view EnvName(absl::string_view entry) {
  return entry.substr(0, entry.find('='));
}

// Replaces the entry named like `entry` in `env`, or appends `entry`.
void SetEnv(std::vector<std::string>& env, std::string entry) {
  const absl::string_view name = EnvName(entry);
  auto same_name = [name](const std::string& existing) {
    return EnvName(existing) == name;
  };
  auto it = std::find_if(env.begin(), env.end(), same_name);
  if (it == env.end()) {
    env.push_back(std::move(entry));
  } else {
    *it = std::move(entry);
  }
}

// `requested` made absolute against the CLI's working directory (the daemon
// has its own); the CLI's working directory itself when `requested` is empty.
absl::StatusOr<std::string> ChildCwd(const std::string& requested) {
  if (!requested.empty() && requested[0] == '/') return requested;
  char buffer[4096];
  if (getcwd(buffer, sizeof(buffer)) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot find the current directory for the child (use --cwd): ",
        strerror(errno)));
  }
  if (requested.empty()) return std::string(buffer);
  return absl::StrCat(buffer, "/", requested);
}

// A stdio spec of `kind` for each of stdin, stdout, stderr.
void SetStdio(v1::SpawnRequest& request, v1::StdioKind in, v1::StdioKind out,
              v1::StdioKind err) {
  request.mutable_stdin()->set_kind(in);
  request.mutable_stdout()->set_kind(out);
  request.mutable_stderr()->set_kind(err);
}

absl::StatusOr<v1::SpawnRequest> MakeSpawnRequest(const RunOptions& options) {
  if (options.argv.empty()) {
    return absl::InvalidArgumentError(
        "run needs a command: procwarp run [OPTIONS] -- COMMAND [ARGS...]");
  }
  absl::StatusOr<std::vector<std::string>> env =
      BuildChildEnv(options.env, options.inherit_env, OwnEnvironment());
  if (!env.ok()) return env.status();
  absl::StatusOr<std::string> cwd = ChildCwd(options.cwd);
  if (!cwd.ok()) return cwd.status();

  v1::SpawnRequest request;
  request.mutable_argv()->Add(options.argv.begin(), options.argv.end());
  request.mutable_env()->Add(env->begin(), env->end());
  request.set_cwd(*cwd);
  if (!options.name.empty()) (*request.mutable_labels())["name"] = options.name;
  if (options.tty) {
    SetStdio(request, v1::STDIO_KIND_PTY, v1::STDIO_KIND_PTY,
             v1::STDIO_KIND_PTY);
    if (std::optional<v1::WindowSize> size = LocalWindowSize()) {
      *request.mutable_window_size() = *size;
    }
  } else if (options.detach) {
    // Nobody will type into a detached process; its output is kept for a
    // later `procwarp attach`.
    SetStdio(request, v1::STDIO_KIND_NULL, v1::STDIO_KIND_PIPE,
             v1::STDIO_KIND_PIPE);
  } else {
    SetStdio(request, v1::STDIO_KIND_PIPE, v1::STDIO_KIND_PIPE,
             v1::STDIO_KIND_PIPE);
  }
  return request;
}

// Resolves `text` (an id or a unique prefix) and opens a non-owning handle.
absl::StatusOr<Process> OpenProcess(const Client& client,
                                    const std::string& text) {
  absl::StatusOr<std::string> id = ResolveProcessId(client, text);
  if (!id.ok()) return id.status();
  return client.Open(*id);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> BuildChildEnv(
    const std::vector<std::string>& assignments, bool inherit_env,
    const std::vector<std::string>& own_env) {
  std::vector<std::string> env;
  if (inherit_env) env = own_env;
  for (const std::string& assignment : assignments) {
    const absl::string_view name = EnvName(assignment);
    if (name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad environment entry '", assignment,
          "': expected NAME=VALUE, or NAME to pass on this shell's NAME"));
    }
    if (name.size() < assignment.size()) {
      SetEnv(env, assignment);
      continue;
    }
    for (const std::string& own : own_env) {
      if (EnvName(own) == name) SetEnv(env, own);
    }
  }
  return env;
}

absl::StatusOr<int> RunStatus(const GlobalOptions& global) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<v1::GetVersionResponse> version = client->Version();
  if (!version.ok()) return version.status();
  absl::StatusOr<v1::GetStatusResponse> status = client->Status();
  if (!status.ok()) return status.status();

  StatusOutput output;
  output.set_socket_path(client->socket_path());
  output.set_remote(client->remote());
  output.set_context(ChosenContext(global));
  *output.mutable_version() = *std::move(version);
  *output.mutable_status() = *std::move(status);
  if (global.json) {
    if (absl::Status printed = PrintJson(output); !printed.ok()) return printed;
  } else {
    std::cout << FormatStatus(output);
  }
  return 0;
}

namespace {
// How long `run` keeps trying to reach a restarted daemon, and how often.
constexpr absl::Duration kReconnectWindow = absl::Seconds(30);
constexpr absl::Duration kReconnectInterval = absl::Milliseconds(200);
}  // namespace

// `procwarp run` after the daemon went away mid-stream: reconnects to the
// restarted daemon (docs/architecture.md, "Restart without loss") and keeps
// streaming, output written meanwhile included. Gives up after
// kReconnectWindow, or at once when the new daemon does not know the
// process: then exits kDaemonLostExitCode with a message saying so.
absl::StatusOr<int> FollowAcrossRestarts(const GlobalOptions& global,
                                         const std::string& id,
                                         AttachIoOptions io) {
  std::cerr << "procwarp: lost the daemon; reconnecting to follow process "
            << id << std::endl;
  const absl::Time give_up = absl::Now() + kReconnectWindow;
  std::string why = "it did not come back";
  while (absl::Now() < give_up) {
    absl::StatusOr<Client> client = Client::Connect(global.socket_path);
    if (!client.ok()) {
      absl::SleepFor(kReconnectInterval);
      continue;
    }
    absl::StatusOr<Process> process = client->Open(id);
    if (!process.ok()) {
      if (absl::IsUnavailable(process.status())) {
        absl::SleepFor(kReconnectInterval);
        continue;
      }
      why = absl::StrCat("the restarted daemon does not know it: ",
                         process.status().message());
      break;
    }
    // Everything the new daemon read is what we have not seen.
    io.no_replay = false;
    absl::StatusOr<int> result = RunAttached(*process, io);
    if (result.ok()) {
      // As the owning handle would have: the daemon forgets it.
      process->Remove().IgnoreError();
      return result;
    }
    if (!absl::IsUnavailable(result.status())) return result;
    std::cerr << "procwarp: lost the daemon again; reconnecting" << std::endl;
  }
  std::cerr << "procwarp: gave up following process " << id << ": " << why
            << " within " << absl::FormatDuration(kReconnectWindow)
            << " (it may still run: `procwarp ps`)" << std::endl;
  return kDaemonLostExitCode;
}

absl::StatusOr<int> RunRun(const GlobalOptions& global,
                           const RunOptions& options) {
  absl::StatusOr<v1::SpawnRequest> request = MakeSpawnRequest(options);
  if (!request.ok()) return request.status();
  if (!options.detach) {
    if (absl::Status blocked = BlockForwardedSignals(); !blocked.ok()) {
      return blocked;
    }
  }
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<Process> process = client->Spawn(*request);
  if (!process.ok()) return process.status();

  if (options.detach) {
    process->Detach();
    if (global.json) {
      v1::SpawnResponse response;
      *response.mutable_process() = process->info();
      if (absl::Status printed = PrintJson(response); !printed.ok()) {
        return printed;
      }
    } else {
      std::cout << EscapeForTerminal(process->id()) << std::endl;
    }
    return 0;
  }
  // Foreground: `process` owns the child, so the daemon forgets it when we
  // return, whether it exited or we gave up on it.
  const AttachIoOptions io = {.forward_stdin = true, .pty = options.tty};
  absl::StatusOr<int> result = RunAttached(*process, io);
  if (result.ok() || !absl::IsUnavailable(result.status())) return result;
  return FollowAcrossRestarts(global, process->id(), io);
}

absl::StatusOr<int> RunPs(const GlobalOptions& global, bool all) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<std::vector<v1::ProcessInfo>> processes = client->List(all);
  if (!processes.ok()) return processes.status();
  std::stable_sort(processes->begin(), processes->end(),
                   [](const v1::ProcessInfo& a, const v1::ProcessInfo& b) {
                     return a.started_unix_ns() < b.started_unix_ns();
                   });
  if (global.json) {
    v1::ListProcessesResponse response;
    response.mutable_processes()->Add(processes->begin(), processes->end());
    if (absl::Status printed = PrintJson(response); !printed.ok()) {
      return printed;
    }
  } else {
    std::cout << FormatProcessTable(*processes);
  }
  return 0;
}

absl::StatusOr<int> RunAttach(const GlobalOptions& global,
                              const std::string& id, bool no_stdin) {
  if (absl::Status blocked = BlockForwardedSignals(); !blocked.ok()) {
    return blocked;
  }
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<Process> process = OpenProcess(*client, id);
  if (!process.ok()) return process.status();
  return RunAttached(*process, {.forward_stdin = !no_stdin,
                                .pty = process->info().has_pty(),
                                .forward_termination = false});
}

absl::StatusOr<int> RunKill(const GlobalOptions& global, const std::string& id,
                            const std::string& signal_text) {
  absl::StatusOr<int> signal = ParseSignal(signal_text);
  if (!signal.ok()) return signal.status();
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<Process> process = OpenProcess(*client, id);
  if (!process.ok()) return process.status();
  if (absl::Status sent = process->Signal(*signal); !sent.ok()) return sent;
  if (global.json) {
    if (absl::Status printed = PrintJson(v1::SignalResponse());
        !printed.ok()) {
      return printed;
    }
  }
  return 0;
}

absl::StatusOr<int> RunWait(const GlobalOptions& global,
                            const std::string& id) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<Process> process = OpenProcess(*client, id);
  if (!process.ok()) return process.status();
  absl::StatusOr<v1::ExitStatus> exit = process->Wait();
  if (!exit.ok()) return exit.status();
  if (global.json) {
    v1::WaitResponse response;
    *response.mutable_process() = process->info();
    if (absl::Status printed = PrintJson(response); !printed.ok()) {
      return printed;
    }
  } else {
    std::cout << DescribeExitStatus(*exit) << std::endl;
  }
  return ShellExitCode(*exit);
}

absl::StatusOr<int> RunRm(const GlobalOptions& global,
                          const std::vector<std::string>& ids, bool force) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  for (const std::string& id : ids) {
    absl::StatusOr<Process> process = OpenProcess(*client, id);
    if (!process.ok()) return process.status();
    if (absl::Status removed = process->Remove(force); !removed.ok()) {
      return removed;
    }
    if (global.json) {
      if (absl::Status printed = PrintJson(v1::RemoveProcessResponse());
          !printed.ok()) {
        return printed;
      }
    } else {
      std::cout << EscapeForTerminal(process->id()) << std::endl;
    }
  }
  return 0;
}

absl::StatusOr<int> RunEvents(const GlobalOptions& global) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::Status print_error;
  absl::Status stream_error =
      client->Events([&](const v1::ProcessEvent& event) {
        if (global.json) {
          print_error = PrintJson(event);
          return print_error.ok();
        }
        std::cout << FormatEvent(event) << std::endl;
        return true;
      });
  if (!print_error.ok()) return print_error;
  if (!stream_error.ok()) {
    return absl::Status(stream_error.code(),
                        absl::StrCat("the event stream from procwarpd ended: ",
                                     stream_error.message()));
  }
  return 0;
}

}  // namespace procwarp::cli
