// The `procwarp thread ...` subcommands (see thread_commands.h).
#include "client/cli/thread_commands.h"
#include "client/cli/target.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli/output.h"
#include "client/cli/syscall_names.h"

extern char** environ;

namespace procwarp::cli {
namespace {

ThreadOptions ToThreadOptions(const ThreadCreateOptions& options) {
  ThreadOptions thread;
  thread.persistent = true;
  thread.user_namespace = options.user_namespace;
  thread.mount_namespace = options.mount_namespace;
  thread.pid_namespace = options.pid_namespace;
  thread.net_namespace = options.net_namespace;
  thread.uts_namespace = options.uts_namespace;
  thread.ipc_namespace = options.ipc_namespace;
  if (!options.name.empty()) thread.labels["name"] = options.name;
  return thread;
}

// Resolves `text` (an id or unique prefix) against the caller's threads. An
// exact id the listing does not show is passed on for the daemon to judge.
absl::StatusOr<std::string> ResolveThreadId(const Client& client,
                                            absl::string_view text) {
  absl::StatusOr<std::vector<v1::ThreadInfo>> threads = client.ListThreads();
  if (!threads.ok()) return threads.status();
  absl::StatusOr<std::string> id = MatchThreadIdPrefix(text, *threads);
  if (id.ok() || id.status().code() != absl::StatusCode::kNotFound) return id;
  if (client.GetThread(std::string(text)).ok()) return std::string(text);
  return id;
}

absl::StatusOr<Thread> OpenThread(const Client& client,
                                  const std::string& text) {
  absl::StatusOr<std::string> id = ResolveThreadId(client, text);
  if (!id.ok()) return id.status();
  return client.OpenThread(*id);
}

std::string DescribeNamespaces(const v1::Namespaces& namespaces) {
  std::vector<std::string> names;
  if (namespaces.user()) names.push_back("user");
  if (namespaces.mount()) names.push_back("mnt");
  if (namespaces.pid()) names.push_back("pid");
  if (namespaces.net()) names.push_back("net");
  if (namespaces.uts()) names.push_back("uts");
  if (namespaces.ipc()) names.push_back("ipc");
  return names.empty() ? "-" : absl::StrJoin(names, ",");
}

std::string DescribeState(const v1::ThreadInfo& thread) {
  switch (thread.state()) {
    case v1::THREAD_STATE_RUNNING:
      return "running";
    case v1::THREAD_STATE_EXITED:
      return "exited";
    case v1::THREAD_STATE_DETACHED:
      return "detached";
    default:
      return "unknown";
  }
}

std::vector<std::string> OwnEnvironment() {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    env.emplace_back(*entry);
  }
  return env;
}

absl::StatusOr<std::vector<int64_t>> ParseArgs(
    const std::vector<std::string>& args) {
  std::vector<int64_t> values;
  for (const std::string& arg : args) {
    absl::StatusOr<int64_t> value = ParseSyscallArg(arg);
    if (!value.ok()) return value.status();
    values.push_back(*value);
  }
  return values;
}

}  // namespace

absl::StatusOr<std::string> MatchThreadIdPrefix(
    absl::string_view prefix, const std::vector<v1::ThreadInfo>& threads) {
  if (prefix.empty()) {
    return absl::InvalidArgumentError("empty thread id");
  }
  std::vector<std::string> matches;
  for (const v1::ThreadInfo& thread : threads) {
    if (thread.id() == prefix) return thread.id();
    if (absl::StartsWith(thread.id(), prefix)) matches.push_back(thread.id());
  }
  if (matches.size() == 1) return matches.front();
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat("no thread with id '", prefix, "'"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "thread id prefix '", prefix, "' is ambiguous: ",
      absl::StrJoin(matches, ", ")));
}

std::string FormatThreadTable(const std::vector<v1::ThreadInfo>& threads) {
  std::string table = absl::StrFormat("%-12s  %7s  %-7s  %5s  %-10s  %-16s  %s\n",
                                      "ID", "PID", "STATE", "UID", "PERSISTENT",
                                      "NAMESPACES", "NAME");
  for (const v1::ThreadInfo& thread : threads) {
    auto name = thread.labels().find("name");
    absl::StrAppendFormat(
        &table, "%-12s  %7d  %-7s  %5d  %-10s  %-16s  %s\n",
        EscapeForTerminal(thread.id().substr(0, 12)), thread.pid(),
        DescribeState(thread), thread.uid(), thread.persistent() ? "yes" : "no",
        DescribeNamespaces(thread.namespaces()),
        name == thread.labels().end() ? "" : EscapeForTerminal(name->second));
  }
  return table;
}

absl::StatusOr<int> RunThreadCreate(const GlobalOptions& global,
                                    const ThreadCreateOptions& options) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<Thread> thread =
      client->CreateThread(ToThreadOptions(options));
  if (!thread.ok()) return thread.status();
  v1::CreateThreadResponse response;
  *response.mutable_thread() = thread->info();
  thread->Release();
  if (global.json) {
    if (absl::Status printed = PrintJson(response); !printed.ok()) {
      return printed;
    }
    return 0;
  }
  std::cout << EscapeForTerminal(response.thread().id()) << std::endl;
  return 0;
}

absl::StatusOr<int> RunThreadLs(const GlobalOptions& global, bool all) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<std::vector<v1::ThreadInfo>> threads =
      client->ListThreads(all);
  if (!threads.ok()) return threads.status();
  std::stable_sort(threads->begin(), threads->end(),
                   [](const v1::ThreadInfo& a, const v1::ThreadInfo& b) {
                     return a.created_unix_ns() < b.created_unix_ns();
                   });
  if (global.json) {
    v1::ListThreadsResponse response;
    response.mutable_threads()->Add(threads->begin(), threads->end());
    if (absl::Status printed = PrintJson(response); !printed.ok()) {
      return printed;
    }
  } else {
    std::cout << FormatThreadTable(*threads);
  }
  return 0;
}

absl::StatusOr<int> RunThreadSyscall(const GlobalOptions& global,
                                     const std::string& id,
                                     const std::string& syscall,
                                     const std::vector<std::string>& args) {
  absl::StatusOr<int64_t> number = ParseSyscall(syscall);
  if (!number.ok()) return number.status();
  absl::StatusOr<std::vector<int64_t>> values = ParseArgs(args);
  if (!values.ok()) return values.status();
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<Thread> thread = OpenThread(*client, id);
  if (!thread.ok()) return thread.status();
  absl::StatusOr<SyscallResult> result =
      thread->RawSyscall(*number, *std::move(values));
  if (!result.ok()) return result.status();
  if (global.json) {
    v1::SyscallResponse response;
    response.mutable_result()->set_value(result->value);
    response.mutable_result()->set_error(result->error);
    response.mutable_result()->set_error_name(result->error_name);
    if (absl::Status printed = PrintJson(response); !printed.ok()) {
      return printed;
    }
  } else {
    std::cout << FormatSyscallResult(*result) << std::endl;
  }
  return 0;
}

absl::StatusOr<int> RunThreadExec(const GlobalOptions& global,
                                  const std::string& id,
                                  const ThreadExecOptions& given) {
  ThreadExecOptions options = given;
  // After the thread id CLI11 passes everything on, including the "--"
  // people write to separate the program.
  if (!options.argv.empty() && options.argv.front() == "--") {
    options.argv.erase(options.argv.begin());
  }
  if (options.argv.empty()) {
    return absl::InvalidArgumentError(
        "thread exec needs a command: procwarp thread exec ID -- PROGRAM "
        "[ARGS...]");
  }
  absl::StatusOr<std::vector<std::string>> env =
      BuildChildEnv(options.env, /*inherit_env=*/false, OwnEnvironment());
  if (!env.ok()) return env.status();
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<Thread> thread = OpenThread(*client, id);
  if (!thread.ok()) return thread.status();
  ExecOptions exec{.argv = options.argv, .env = *std::move(env)};
  if (!options.name.empty()) exec.labels["name"] = options.name;
  absl::StatusOr<Process> process = thread->Exec(exec);
  if (!process.ok()) return process.status();
  process->Detach();
  if (global.json) {
    v1::ExecResponse response;
    *response.mutable_process() = process->info();
    if (absl::Status printed = PrintJson(response); !printed.ok()) {
      return printed;
    }
  } else {
    std::cout << EscapeForTerminal(process->id()) << std::endl;
  }
  return 0;
}

absl::StatusOr<int> RunThreadKill(const GlobalOptions& global,
                                  const std::string& id) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return client.status();
  absl::StatusOr<Thread> thread = OpenThread(*client, id);
  if (!thread.ok()) return thread.status();
  if (absl::Status exited = thread->Exit(); !exited.ok()) return exited;
  if (global.json) {
    if (absl::Status printed = PrintJson(v1::ExitThreadResponse());
        !printed.ok()) {
      return printed;
    }
  }
  return 0;
}

}  // namespace procwarp::cli
