// See spawn_plan.h.
#include "daemon/process/spawn_plan.h"

#include <sched.h>
#include <unistd.h>

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

using procwarp::v1::SpawnRequest;
using procwarp::v1::StdioKind;

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";

absl::Status CheckNoNul(absl::string_view field, absl::string_view value) {
  if (value.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " contains a NUL byte"));
  }
  return absl::OkStatus();
}

absl::Status ValidateArgvAndEnv(const SpawnRequest& request) {
  if (request.argv().empty()) {
    return absl::InvalidArgumentError("argv is empty: name a program to run");
  }
  if (request.argv(0).empty() && request.path().empty()) {
    return absl::InvalidArgumentError("argv[0] is empty and no path is given");
  }
  size_t total = 0;
  for (int i = 0; i < request.argv_size(); ++i) {
    RETURN_IF_ERROR(CheckNoNul(absl::StrCat("argv[", i, "]"), request.argv(i)));
    total += request.argv(i).size() + 1 + sizeof(char*);
  }
  for (int i = 0; i < request.env_size(); ++i) {
    const std::string& entry = request.env(i);
    RETURN_IF_ERROR(CheckNoNul(absl::StrCat("env[", i, "]"), entry));
    size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "env[", i, "] '", entry.substr(0, 64), "' is not NAME=value"));
    }
    total += entry.size() + 1 + sizeof(char*);
  }
  long arg_max = sysconf(_SC_ARG_MAX);
  if (arg_max > 0 && total > static_cast<size_t>(arg_max)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "argv and env take ", total, " bytes, more than ARG_MAX (", arg_max,
        ")"));
  }
  RETURN_IF_ERROR(CheckNoNul("path", request.path()));
  RETURN_IF_ERROR(CheckNoNul("cwd", request.cwd()));
  return absl::OkStatus();
}

// The executables to try: the path itself when it has a slash, else each
// PATH entry (from the child's env, or a default) joined with it.
std::vector<std::string> ExecutableCandidates(const SpawnRequest& request) {
  std::string program = request.path().empty() ? request.argv(0) : request.path();
  if (absl::StrContains(program, '/')) return {program};
  std::string search = kDefaultPath;
  for (const std::string& entry : request.env()) {
    if (absl::StartsWith(entry, "PATH=")) search = entry.substr(5);
  }
  std::vector<std::string> candidates;
  for (absl::string_view dir : absl::StrSplit(search, ':')) {
    candidates.push_back(absl::StrCat(dir.empty() ? "." : dir, "/", program));
  }
  return candidates;
}

absl::StatusOr<int> RlimitResource(absl::string_view name) {
  static const auto* kResources = new std::map<std::string, int, std::less<>>{
      {"AS", RLIMIT_AS},         {"CORE", RLIMIT_CORE},
      {"CPU", RLIMIT_CPU},       {"DATA", RLIMIT_DATA},
      {"FSIZE", RLIMIT_FSIZE},   {"LOCKS", RLIMIT_LOCKS},
      {"MEMLOCK", RLIMIT_MEMLOCK}, {"MSGQUEUE", RLIMIT_MSGQUEUE},
      {"NICE", RLIMIT_NICE},     {"NOFILE", RLIMIT_NOFILE},
      {"NPROC", RLIMIT_NPROC},   {"RSS", RLIMIT_RSS},
      {"RTPRIO", RLIMIT_RTPRIO}, {"RTTIME", RLIMIT_RTTIME},
      {"SIGPENDING", RLIMIT_SIGPENDING}, {"STACK", RLIMIT_STACK},
  };
  absl::string_view bare = name;
  if (absl::StartsWith(bare, "RLIMIT_")) bare.remove_prefix(7);
  auto it = kResources->find(bare);
  if (it == kResources->end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown rlimit resource '", name, "'"));
  }
  return it->second;
}

absl::Status ValidateStdio(const SpawnRequest& request) {
  const procwarp::v1::StdioSpec* specs[] = {&request.stdin(), &request.stdout(),
                                            &request.stderr()};
  const char* names[] = {"stdin", "stdout", "stderr"};
  for (int i = 0; i < 3; ++i) {
    if (!procwarp::v1::StdioKind_IsValid(specs[i]->kind())) {
      return absl::InvalidArgumentError(
          absl::StrCat(names[i], ": unknown stdio kind ", specs[i]->kind()));
    }
    if (specs[i]->kind() == procwarp::v1::STDIO_KIND_FILE) {
      if (specs[i]->path().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(names[i], ": file stdio needs a path"));
      }
      RETURN_IF_ERROR(CheckNoNul(absl::StrCat(names[i], ".path"), specs[i]->path()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool SpawnPlan::uses_pty() const {
  for (const auto& s : stdio) {
    if (s.kind() == procwarp::v1::STDIO_KIND_PTY) return true;
  }
  return false;
}

absl::StatusOr<SpawnPlan> BuildSpawnPlan(const SpawnRequest& request,
                                         const Identity& caller) {
  RETURN_IF_ERROR(ValidateArgvAndEnv(request));
  RETURN_IF_ERROR(ValidateStdio(request));

  SpawnPlan plan;
  plan.executables = ExecutableCandidates(request);
  plan.argv.assign(request.argv().begin(), request.argv().end());
  plan.env.assign(request.env().begin(), request.env().end());
  plan.cwd = request.cwd().empty() ? "/" : request.cwd();
  if (request.has_umask()) {
    if (request.umask() > 0777) {
      return absl::InvalidArgumentError(
          absl::StrFormat("umask %#o is not a file mode", request.umask()));
    }
    plan.umask = request.umask();
  }

  // Children run as their caller; only admins may pick someone else.
  plan.uid = caller.uid;
  plan.gid = caller.gid;
  plan.groups = caller.groups;
  if (request.has_uid() || request.has_gid()) {
    if (!caller.admin) {
      return absl::PermissionDeniedError(
          "only root or members of the admin group may choose the uid/gid");
    }
    if (request.has_uid()) plan.uid = request.uid();
    if (request.has_gid()) plan.gid = request.gid();
    // Someone else's identity does not come with the caller's groups.
    plan.groups = {plan.gid};
  }

  for (const auto& r : request.rlimits()) {
    ASSIGN_OR_RETURN(int resource, RlimitResource(r.resource()));
    if (r.soft() > r.hard()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rlimit ", r.resource(), ": soft limit ", r.soft(),
          " is above the hard limit ", r.hard()));
    }
    plan.rlimits.push_back({resource, {r.soft(), r.hard()}});
  }

  const auto& ns = request.namespaces();
  if (ns.mount()) plan.unshare_flags |= CLONE_NEWNS;
  if (ns.net()) plan.unshare_flags |= CLONE_NEWNET;
  if (ns.uts()) plan.unshare_flags |= CLONE_NEWUTS;
  if (ns.ipc()) plan.unshare_flags |= CLONE_NEWIPC;
  // Creating namespaces takes CAP_SYS_ADMIN; an unprivileged child gets it
  // only inside a user namespace of its own, so one is implied.
  bool privileged = plan.uid == 0;
  if (ns.user() || (!privileged && (plan.unshare_flags != 0 || ns.pid()))) {
    plan.unshare_flags |= CLONE_NEWUSER;
  }
  plan.new_pid_namespace = ns.pid();

  plan.new_session = request.new_session();
  plan.stdio[0] = request.stdin();
  plan.stdio[1] = request.stdout();
  plan.stdio[2] = request.stderr();
  plan.window_size = request.window_size();
  if (plan.uses_pty()) plan.new_session = true;  // the pty becomes its ctty
  return plan;
}

}  // namespace procwarp
