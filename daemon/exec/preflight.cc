// See preflight.h.
#include "daemon/exec/preflight.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/exec/transient_attach.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::exec {
namespace {

namespace pb = procwarp::exec::v1;
using Checks = google::protobuf::RepeatedPtrField<pb::Check>;

void Add(Checks* checks, absl::string_view name, pb::Verdict verdict,
         std::string detail, std::string fix = "") {
  pb::Check* c = checks->Add();
  c->set_name(std::string(name));
  c->set_verdict(verdict);
  c->set_detail(std::move(detail));
  c->set_fix(std::move(fix));
}

// "Key:\tvalue" lines of a /proc status file.
std::map<std::string, std::string> StatusFields(absl::string_view text) {
  std::map<std::string, std::string> fields;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    fields[std::string(kv.first)] =
        std::string(absl::StripAsciiWhitespace(kv.second));
  }
  return fields;
}

std::vector<int64_t> Numbers(absl::string_view text) {
  std::vector<int64_t> out;
  for (absl::string_view word : absl::StrSplit(text, absl::ByAnyChar(" \t"),
                                               absl::SkipEmpty())) {
    int64_t n;
    if (absl::SimpleAtoi(word, &n)) out.push_back(n);
  }
  return out;
}

// A whole small file relative to `dir_fd` (AT_FDCWD for absolute paths).
absl::StatusOr<std::string> ReadAt(int dir_fd, const std::string& name) {
  UniqueFd fd(openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open(", name, ")"));
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = read(fd.get(), buffer, sizeof(buffer))) > 0;) {
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > (1 << 22)) break;
  }
  return text;
}

struct Capability {
  int bit;
  const char* name;
  const char* needed_for;
};
constexpr Capability kCapabilities[] = {
    {19, "CAP_SYS_PTRACE", "attaching to other users' processes (every Exec operation)"},
    {21, "CAP_SYS_ADMIN", "suspending a target's seccomp for admins, namespaces for threads"},
    {2, "CAP_DAC_READ_SEARCH", "reading targets' libraries through /proc/PID/map_files"},
    {6, "CAP_SETGID", "opening libraries and spawning as the caller"},
    {7, "CAP_SETUID", "opening libraries and spawning as the caller"},
    {5, "CAP_KILL", "signalling the caller's processes"},
    {40, "CAP_CHECKPOINT_RESTORE", "snapshots"},
};

void CheckCapabilities(const std::map<std::string, std::string>& self,
                       Checks* checks) {
  uint64_t effective = 0;
  auto it = self.find("CapEff");
  if (it == self.end() || !absl::SimpleHexAtoi(it->second, &effective)) {
    Add(checks, "capabilities", pb::VERDICT_WARN,
        "cannot read procwarpd's effective capabilities");
    return;
  }
  std::vector<std::string> held;
  for (const Capability& cap : kCapabilities) {
    if (effective & (uint64_t{1} << cap.bit)) {
      held.push_back(cap.name);
      continue;
    }
    bool essential = cap.bit == 19;
    Add(checks, absl::StrCat("capability ", cap.name),
        essential ? pb::VERDICT_FAIL : pb::VERDICT_WARN,
        absl::StrCat("procwarpd lacks ", cap.name, ", needed for ",
                     cap.needed_for),
        "run procwarpd as root with its capabilities (the systemd unit in "
        "deploy/ keeps them)");
  }
  Add(checks, "capabilities", pb::VERDICT_INFO,
      absl::StrCat("procwarpd holds ", held.empty() ? "none of them" : absl::StrJoin(held, ", ")));
}

void CheckYama(Checks* checks) {
  absl::StatusOr<std::string> scope =
      ReadAt(AT_FDCWD, "/proc/sys/kernel/yama/ptrace_scope");
  if (!scope.ok()) {
    Add(checks, "yama", pb::VERDICT_INFO,
        "no Yama on this kernel (/proc/sys/kernel/yama/ptrace_scope is absent)");
    return;
  }
  int value = -1;
  (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(*scope), &value);
  switch (value) {
    case 0:
      Add(checks, "yama", pb::VERDICT_OK, "ptrace_scope 0 (classic ptrace rules)");
      return;
    case 1:
    case 2:
      Add(checks, "yama", pb::VERDICT_OK,
          absl::StrCat("ptrace_scope ", value,
                       ": procwarpd attaches with CAP_SYS_PTRACE, which this "
                       "scope allows; the ptrace rule for callers still applies"));
      return;
    default:
      Add(checks, "yama", pb::VERDICT_FAIL,
          absl::StrCat("ptrace_scope ", value, ": no process may attach"),
          "scope 3 cannot be lowered until reboot; boot with a lower "
          "kernel.yama.ptrace_scope");
  }
}

void CheckLsm(Checks* checks) {
  absl::StatusOr<std::string> lsm = ReadAt(AT_FDCWD, "/sys/kernel/security/lsm");
  if (!lsm.ok()) {
    Add(checks, "lsm", pb::VERDICT_INFO,
        "the loaded LSMs are unknown (securityfs not mounted)");
    return;
  }
  std::string list(absl::StripAsciiWhitespace(*lsm));
  bool confining = absl::StrContains(list, "apparmor") ||
                   absl::StrContains(list, "selinux") ||
                   absl::StrContains(list, "smack");
  Add(checks, "lsm", confining ? pb::VERDICT_WARN : pb::VERDICT_OK,
      absl::StrCat("LSMs: ", list.empty() ? "none" : list,
                   confining ? " (its policy may deny ptrace or process_vm_*: "
                               "such denials come back as PERMISSION_DENIED)"
                             : ""));
}

void CheckOwnProcess(const std::map<std::string, std::string>& self,
                     Checks* checks) {
  auto seccomp = self.find("Seccomp");
  if (seccomp != self.end() && seccomp->second != "0") {
    Add(checks, "daemon seccomp", pb::VERDICT_WARN,
        absl::StrCat("procwarpd runs under seccomp mode ", seccomp->second,
                     ": a filter that forbids ptrace or process_vm_* breaks Exec"),
        "no SystemCallFilter=@system-service in the unit");
  }
  auto nspid = self.find("NSpid");
  if (nspid != self.end() && Numbers(nspid->second).size() > 1) {
    Add(checks, "pid namespace", pb::VERDICT_WARN,
        "procwarpd runs inside a pid namespace: it reaches only the processes "
        "in it, by the pids it sees");
  }
  static volatile char probe = 1;
  char byte = 0;
  iovec local = {&byte, 1};
  iovec remote = {const_cast<char*>(&probe), 1};
  if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1) {
    Add(checks, "process_vm_readv", pb::VERDICT_OK, "available");
  } else {
    Add(checks, "process_vm_readv", pb::VERDICT_WARN,
        absl::StrCat("unavailable (", ErrnoName(errno),
                     "): target memory goes through /proc/PID/mem or "
                     "PTRACE_PEEKDATA"));
  }
}

std::string Comm(pid_t pid) {
  absl::StatusOr<std::string> comm = ReadAt(AT_FDCWD, absl::StrCat("/proc/", pid, "/comm"));
  return comm.ok() ? std::string(absl::StripAsciiWhitespace(*comm)) : "?";
}

// State, tracer and seccomp: what stops an attach whoever asks.
void CheckRunState(pid_t pid, const pb::TargetFacts& facts, Checks* checks) {
  char state = facts.state().empty() ? '?' : facts.state()[0];
  if (state == 'Z' || state == 'X') {
    Add(checks, "state", pb::VERDICT_FAIL,
        absl::StrCat("pid ", pid, " is a zombie (", facts.state(),
                     "): it has exited and only waits for its parent to reap it"),
        "nothing to attach to; its parent must wait() for it");
  } else if (state == 'T') {
    Add(checks, "state", pb::VERDICT_FAIL,
        absl::StrCat("pid ", pid, " is stopped by job control (", facts.state(),
                     "): it could not run a call"),
        absl::StrCat("continue it first: kill -CONT ", pid));
  } else if (state == 'D') {
    Add(checks, "state", pb::VERDICT_WARN,
        absl::StrCat("pid ", pid, " is in uninterruptible sleep: an operation "
                     "waits for it to stop until its deadline"));
  } else {
    Add(checks, "state", pb::VERDICT_OK, facts.state());
  }
  if (facts.tracer_pid() != 0) {
    Add(checks, "tracer", pb::VERDICT_FAIL,
        absl::StrCat("pid ", pid, " is already traced by pid ", facts.tracer_pid(),
                     " (", facts.tracer_comm(), "); a process has one tracer at a time"),
        absl::StrCat("detach that tracer (quit the debugger or strace in pid ",
                     facts.tracer_pid(), ")"));
  } else {
    Add(checks, "tracer", pb::VERDICT_OK, "not traced");
  }
  switch (facts.seccomp_mode()) {
    case 0:
      Add(checks, "seccomp", pb::VERDICT_OK, "no seccomp");
      break;
    case 1:
      Add(checks, "seccomp", pb::VERDICT_FAIL,
          "strict seccomp: only read, write, exit and sigreturn are allowed, so "
          "injected syscalls and calls would kill it");
      break;
    default:
      Add(checks, "seccomp", pb::VERDICT_WARN,
          "a seccomp filter is installed: a syscall it traps is reported as "
          "refused by seccomp, and called functions run under the filter");
  }
}

void CheckExe(const ProcDir& dir, pb::TargetFacts* facts, Checks* checks) {
  char buffer[4096];
  ssize_t n = readlinkat(dir.fd(), "exe", buffer, sizeof(buffer) - 1);
  if (n < 0) {
    Add(checks, "exe", pb::VERDICT_WARN,
        absl::StrCat("cannot read /proc/", dir.pid(), "/exe: ", ErrnoName(errno)));
    return;
  }
  facts->set_exe(std::string(buffer, static_cast<size_t>(n)));
  struct stat direct {}, through_root {};
  bool same = fstatat(dir.fd(), "exe", &direct, 0) == 0 &&
              fstatat(dir.fd(), absl::StrCat("root", facts->exe()).c_str(),
                      &through_root, 0) == 0 &&
              direct.st_dev == through_root.st_dev &&
              direct.st_ino == through_root.st_ino;
  facts->set_exe_through_root(same);
  Add(checks, "exe", same ? pb::VERDICT_OK : pb::VERDICT_WARN,
      same ? absl::StrCat(facts->exe(), " (the same file through its root, /proc/",
                          dir.pid(), "/root)")
           : absl::StrCat(facts->exe(), " is not that file through its root (/proc/",
                          dir.pid(), "/root): deleted or replaced since it started"));
}

void CheckMemory(const ProcDir& dir, Checks* checks) {
  absl::StatusOr<std::string> maps_text = ReadAt(dir.fd(), "maps");
  absl::StatusOr<std::vector<ptrace::Mapping>> maps =
      maps_text.ok() ? ptrace::ParseMaps(*maps_text)
                     : absl::StatusOr<std::vector<ptrace::Mapping>>(maps_text.status());
  uint64_t address = 0;
  if (maps.ok()) {
    for (const ptrace::Mapping& m : *maps) {
      if (m.read && m.path != "[vvar]" && m.path != "[vsyscall]") {
        address = m.start;
        break;
      }
    }
  }
  if (address == 0) {
    Add(checks, "memory", pb::VERDICT_WARN, "no readable mapping to probe");
    return;
  }
  char byte;
  iovec local = {&byte, 1};
  iovec remote = {reinterpret_cast<void*>(address), 1};
  if (process_vm_readv(dir.pid(), &local, 1, &remote, 1, 0) == 1) {
    Add(checks, "memory", pb::VERDICT_OK, "process_vm_readv works");
    return;
  }
  std::string denied = ErrnoName(errno).data();
  UniqueFd mem(openat(dir.fd(), "mem", O_RDONLY | O_CLOEXEC));
  if (mem && pread(mem.get(), &byte, 1, static_cast<off_t>(address)) == 1) {
    Add(checks, "memory", pb::VERDICT_WARN,
        absl::StrCat("process_vm_readv is denied (", denied,
                     "): memory goes through /proc/", dir.pid(), "/mem"));
    return;
  }
  Add(checks, "memory", pb::VERDICT_WARN,
      absl::StrCat("process_vm_readv (", denied, ") and /proc/", dir.pid(),
                   "/mem are denied: memory goes through PTRACE_PEEKDATA "
                   "(slow, one word per request)"));
}

// Glibc with a dlopen: what library injection needs.
bool CheckInjection(pid_t pid, pb::TargetFacts* facts, Checks* checks) {
  absl::StatusOr<SymbolResolver> symbols = SymbolResolver::ForProcess(pid, nullptr);
  if (!symbols.ok()) {
    Add(checks, "injection", pb::VERDICT_FAIL,
        absl::StrCat("cannot read its ELF objects: ", symbols.status().message()));
    return false;
  }
  const LoadedObject* libc = symbols->FindObject("libc.so.6");
  if (libc == nullptr) {
    Add(checks, "injection", pb::VERDICT_FAIL,
        absl::StrCat("no libc.so.6 mapped (it has: ", symbols->DescribeObjects(),
                     symbols->objects().size() <= 1 ? "; a static binary?" : "",
                     "): library injection needs glibc; calls by symbol or "
                     "address still work"));
    return false;
  }
  facts->set_libc(libc->path);
  for (const char* name : {"dlopen", "__libc_dlopen_mode"}) {
    if (symbols->Lookup(*libc, name).ok()) {
      Add(checks, "injection", pb::VERDICT_OK,
          absl::StrCat("glibc at ", libc->path, " has ", name));
      return true;
    }
  }
  if (const LoadedObject* libdl = symbols->FindObject("libdl.so.2")) {
    if (symbols->Lookup(*libdl, "dlopen").ok()) {
      Add(checks, "injection", pb::VERDICT_OK,
          absl::StrCat("glibc with dlopen in ", libdl->path));
      return true;
    }
  }
  Add(checks, "injection", pb::VERDICT_FAIL,
      absl::StrCat("glibc at ", libc->path, " but no dlopen in it or libdl.so.2"));
  return false;
}

bool AnyFailure(const Checks& checks) {
  for (const pb::Check& c : checks) {
    if (c.verdict() == pb::VERDICT_FAIL) return true;
  }
  return false;
}

}  // namespace

void DaemonPreflight(const Identity& caller, pb::PreflightResponse* response) {
  Checks* checks = response->mutable_daemon();
  absl::StatusOr<std::string> self = ReadAt(AT_FDCWD, "/proc/self/status");
  std::map<std::string, std::string> fields =
      self.ok() ? StatusFields(*self) : std::map<std::string, std::string>();
  CheckCapabilities(fields, checks);
  CheckYama(checks);
  CheckLsm(checks);
  CheckOwnProcess(fields, checks);
  Add(checks, "caller", pb::VERDICT_INFO,
      absl::StrCat("uid ", caller.uid, " gid ", caller.gid,
                   caller.admin ? " (admin: may act on any process)"
                                : " (may act on processes it could ptrace itself)"));
}

absl::Status TargetPreflight(const Identity& caller, pid_t pid,
                             pb::PreflightResponse* response) {
  ASSIGN_OR_RETURN(UniqueFd pidfd, OpenPidfd(pid));
  ASSIGN_OR_RETURN(ProcDir dir, ProcDir::Open(pid, pidfd.get()));
  ASSIGN_OR_RETURN(std::string status_text, ReadAt(dir.fd(), "status"));
  ASSIGN_OR_RETURN(ProcessStatus status, ReadProcessStatus(dir));
  std::map<std::string, std::string> fields = StatusFields(status_text);

  pb::TargetFacts* facts = response->mutable_facts();
  facts->set_pid(pid);
  for (int64_t n : Numbers(fields["NSpid"])) facts->add_ns_pids(static_cast<int32_t>(n));
  facts->set_state(fields["State"]);
  facts->set_comm(fields["Name"]);
  for (int64_t n : Numbers(fields["Uid"])) facts->add_uids(static_cast<uint32_t>(n));
  for (int64_t n : Numbers(fields["Gid"])) facts->add_gids(static_cast<uint32_t>(n));
  int tracer = 0, seccomp = 0;
  (void)absl::SimpleAtoi(fields["TracerPid"], &tracer);
  (void)absl::SimpleAtoi(fields["Seccomp"], &seccomp);
  facts->set_tracer_pid(tracer);
  if (tracer != 0) facts->set_tracer_comm(Comm(tracer));
  facts->set_seccomp_mode(seccomp);

  Checks* checks = response->mutable_target();
  if (pid == getpid()) {
    Add(checks, "procwarpd", pb::VERDICT_FAIL, "this is procwarpd itself",
        "pick another process");
  } else if (status.ppid == getpid()) {
    Add(checks, "procwarpd", pb::VERDICT_FAIL,
        "a child of procwarpd (a managed process or an agent thread): the "
        "daemon waits for it itself and does not trace it",
        "use Processes / Threads on it");
  }
  absl::Status rule = CheckCallerMayPtrace(caller, dir, absl::StrCat("pid ", pid));
  if (absl::IsNotFound(rule)) return rule;
  bool allowed = rule.ok();
  if (caller.admin) {
    Add(checks, "ptrace rule", pb::VERDICT_OK,
        "you are an admin: you may act on any process");
  } else if (allowed) {
    Add(checks, "ptrace rule", pb::VERDICT_OK,
        "you could ptrace it yourself: same uid and gid, dumpable, no "
        "capabilities you lack");
  } else {
    Add(checks, "ptrace rule", pb::VERDICT_FAIL, std::string(rule.message()),
        absl::StrCat("run as its owner (uid ", status.uid[0],
                     "), or as root or a member of the admin group"));
  }
  if (status.uid[1] != 0) {
    bool dumpable = status.dump_uid == status.uid[1];
    Add(checks, "dumpable",
        dumpable ? pb::VERDICT_OK
                 : (caller.admin ? pb::VERDICT_WARN : pb::VERDICT_FAIL),
        dumpable ? "dumpable"
                 : absl::StrCat("not dumpable (PR_SET_DUMPABLE 0, or a setuid/"
                                "setgid transition)",
                                caller.admin ? "; admins may still act on it" : ""));
  } else {
    Add(checks, "dumpable", pb::VERDICT_INFO,
        "runs as root: whether it is dumpable does not show in its /proc "
        "owner; only admins may act on it");
  }
  CheckRunState(pid, *facts, checks);
  bool can_call = !AnyFailure(response->daemon()) && !AnyFailure(*checks);
  bool can_inject = false;
  if (!allowed) {
    Add(checks, "details", pb::VERDICT_INFO,
        absl::StrCat("its exe, memory access and libraries are shown only to "
                     "callers who may ptrace pid ", pid));
  } else {
    CheckExe(dir, facts, checks);
    CheckMemory(dir, checks);
    can_inject = CheckInjection(pid, facts, checks) && can_call;
  }
  response->set_can_call(can_call);
  response->set_can_inject(can_inject);
  return absl::OkStatus();
}

}  // namespace procwarp::exec
