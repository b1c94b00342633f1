// See exec_commands.h.
#include "client/cli/exec_commands.h"

#include <unistd.h>

#include <climits>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cc/client.h"
#include "client/cli/output.h"
#include "client/cli/syscall_names.h"

namespace procwarp::cli {
namespace {

namespace pb = exec::v1;

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

const char* VerdictWord(pb::Verdict verdict) {
  switch (verdict) {
    case pb::VERDICT_OK:
      return "ok";
    case pb::VERDICT_WARN:
      return "warn";
    case pb::VERDICT_FAIL:
      return "FAIL";
    case pb::VERDICT_INFO:
      return "info";
    default:
      return "?";
  }
}

void AppendChecks(const google::protobuf::RepeatedPtrField<pb::Check>& checks,
                  std::string* out) {
  for (const pb::Check& check : checks) {
    absl::StrAppendFormat(out, "  %-4s  %-24s  %s\n", VerdictWord(check.verdict()),
                          EscapeForTerminal(check.name()),
                          EscapeForTerminal(check.detail()));
    if (!check.fix().empty() && check.verdict() == pb::VERDICT_FAIL) {
      absl::StrAppend(out, "        fix: ", EscapeForTerminal(check.fix()), "\n");
    }
  }
}

std::string Numbers(const google::protobuf::RepeatedField<uint32_t>& values) {
  return absl::StrJoin(values, " ");
}

std::string FormatFacts(const pb::TargetFacts& facts) {
  std::string out = absl::StrCat("pid ", facts.pid(), " (",
                                 EscapeForTerminal(facts.comm()), ")");
  if (facts.ns_pids_size() > 1) {
    absl::StrAppend(&out, ", pid ", facts.ns_pids(facts.ns_pids_size() - 1),
                    " in its own pid namespace (NSpid ",
                    absl::StrJoin(facts.ns_pids(), " "), ")");
  }
  absl::StrAppend(&out, "\n  state ", EscapeForTerminal(facts.state()), "; uid ",
                  Numbers(facts.uids()), "; gid ", Numbers(facts.gids()), "\n");
  if (!facts.exe().empty()) {
    absl::StrAppend(&out, "  exe ", EscapeForTerminal(facts.exe()), "\n");
  }
  if (!facts.libc().empty()) {
    absl::StrAppend(&out, "  libc ", EscapeForTerminal(facts.libc()), "\n");
  }
  return out;
}

}  // namespace

absl::StatusOr<int> ParsePid(const std::string& text) {
  int pid = 0;
  if (!absl::SimpleAtoi(text, &pid) || pid <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad process id '", EscapeForTerminal(text), "': expected a positive number"));
  }
  return pid;
}

std::string FormatCrash(const pb::Crash& crash) {
  return absl::StrCat("crashed: ", EscapeForTerminal(crash.signal_name()),
                      " at fault address ", Hex(crash.fault_address()), " (rip ",
                      Hex(crash.rip()),
                      "); the target was put back as it was and runs on");
}

std::string FormatPreflight(const pb::PreflightResponse& preflight) {
  std::string out = "procwarpd:\n";
  AppendChecks(preflight.daemon(), &out);
  if (!preflight.has_facts()) return out;
  absl::StrAppend(&out, FormatFacts(preflight.facts()));
  AppendChecks(preflight.target(), &out);
  absl::StrAppend(&out, "call: ", preflight.can_call() ? "will work" : "will not work",
                  "\ninject: ", preflight.can_inject() ? "will work" : "will not work",
                  "\n");
  return out;
}

absl::StatusOr<int> RunCall(const GlobalOptions& global, const std::string& pid_text,
                            const std::string& function,
                            const std::vector<std::string>& args) {
  absl::StatusOr<int> pid = ParsePid(pid_text);
  if (!pid.ok()) return pid.status();
  std::vector<uint64_t> values;
  for (const std::string& arg : args) {
    absl::StatusOr<int64_t> value = ParseSyscallArg(arg);
    if (!value.ok()) return value.status();
    values.push_back(static_cast<uint64_t>(*value));
  }
  absl::StatusOr<Client> client = Client::Connect(global.socket_path);
  if (!client.ok()) return client.status();
  absl::StatusOr<pb::CallResponse> result = client->Call(*pid, function, values);
  if (!result.ok()) return result.status();
  if (global.json) {
    if (absl::Status printed = PrintJson(*result); !printed.ok()) return printed;
  } else if (result->has_crash()) {
    std::cout << FormatCrash(result->crash()) << std::endl;
  } else {
    std::cout << result->return_value() << std::endl;
  }
  return result->has_crash() ? kCallCrashedExitCode : 0;
}

absl::StatusOr<int> RunInject(const GlobalOptions& global, const std::string& pid_text,
                              const std::string& library) {
  absl::StatusOr<int> pid = ParsePid(pid_text);
  if (!pid.ok()) return pid.status();
  std::string path = library;
  if (path.empty() || path[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == nullptr) {
      return absl::FailedPreconditionError("cannot tell the current directory");
    }
    path = absl::StrCat(cwd, "/", library);
  }
  absl::StatusOr<Client> client = Client::Connect(global.socket_path);
  if (!client.ok()) return client.status();
  absl::StatusOr<pb::InjectLibraryResponse> injected = client->InjectLibrary(*pid, path);
  if (!injected.ok()) return injected.status();
  if (global.json) {
    if (absl::Status printed = PrintJson(*injected); !printed.ok()) return printed;
  } else {
    std::cout << EscapeForTerminal(injected->handle()) << std::endl;
  }
  return 0;
}

absl::StatusOr<int> RunUninject(const GlobalOptions& global,
                                const std::string& handle) {
  absl::StatusOr<Client> client = Client::Connect(global.socket_path);
  if (!client.ok()) return client.status();
  if (absl::Status unloaded = client->UnloadLibrary(handle); !unloaded.ok()) {
    return unloaded;
  }
  if (global.json) {
    if (absl::Status printed = PrintJson(pb::UnloadLibraryResponse());
        !printed.ok()) {
      return printed;
    }
  }
  return 0;
}

absl::StatusOr<int> RunDoctor(const GlobalOptions& global,
                              const std::optional<std::string>& pid_text) {
  std::optional<pid_t> pid;
  if (pid_text.has_value()) {
    absl::StatusOr<int> parsed = ParsePid(*pid_text);
    if (!parsed.ok()) return parsed.status();
    pid = *parsed;
  }
  absl::StatusOr<Client> client = Client::Connect(global.socket_path);
  if (!client.ok()) return client.status();
  absl::StatusOr<pb::PreflightResponse> preflight = client->Preflight(pid);
  if (!preflight.ok()) return preflight.status();
  if (global.json) {
    if (absl::Status printed = PrintJson(*preflight); !printed.ok()) return printed;
  } else {
    std::cout << FormatPreflight(*preflight);
  }
  return 0;
}

}  // namespace procwarp::cli
