// See thread_survey.h.
#include "daemon/python/thread_survey.h"

#include <sys/syscall.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/util/status_macros.h"

namespace procwarp::python {
namespace {

struct Named {
  long nr;
  const char* name;
  bool safe;
};

constexpr Named kCalls[] = {
    {SYS_read, "read", true},
    {SYS_write, "write", true},
    {SYS_readv, "readv", true},
    {SYS_writev, "writev", true},
    {SYS_pread64, "pread64", true},
    {SYS_pwrite64, "pwrite64", true},
    {SYS_recvfrom, "recvfrom", true},
    {SYS_recvmsg, "recvmsg", true},
    {SYS_sendto, "sendto", true},
    {SYS_sendmsg, "sendmsg", true},
    {SYS_accept, "accept", true},
    {SYS_accept4, "accept4", true},
    {SYS_connect, "connect", true},
    {SYS_select, "select", true},
    {SYS_pselect6, "pselect6", true},
    {SYS_poll, "poll", true},
    {SYS_ppoll, "ppoll", true},
    {SYS_epoll_wait, "epoll_wait", true},
    {SYS_epoll_pwait, "epoll_pwait", true},
    {SYS_nanosleep, "nanosleep", true},
    {SYS_clock_nanosleep, "clock_nanosleep", true},
    {SYS_wait4, "wait4", true},
    {SYS_waitid, "waitid", true},
    {SYS_pause, "pause", true},
    {SYS_futex, "futex", false},
    {SYS_restart_syscall, "restart_syscall", false},
    {SYS_rt_sigsuspend, "rt_sigsuspend", false},
    {SYS_rt_sigtimedwait, "rt_sigtimedwait", false},
    {SYS_ioctl, "ioctl", false},
    {SYS_openat, "openat", false},
    {SYS_flock, "flock", false},
    {SYS_fcntl, "fcntl", false},
};

const Named* Find(long nr) {
  for (const Named& n : kCalls) {
    if (n.nr == nr) return &n;
  }
  return nullptr;
}

// "running" | "-1 SP PC" | "NR A1 .. A6 SP PC" (hex with 0x).
ThreadPlace ParseSyscallFile(pid_t tid, absl::string_view text) {
  ThreadPlace place;
  place.tid = tid;
  text = absl::StripAsciiWhitespace(text);
  if (text == "running" || text.empty()) {
    place.running = true;
    return place;
  }
  std::vector<absl::string_view> f = absl::StrSplit(text, ' ', absl::SkipEmpty());
  long nr = -1;
  if (!absl::SimpleAtoi(f[0], &nr)) {
    place.running = true;
    return place;
  }
  place.syscall = nr;
  absl::string_view pc = f.back();
  absl::ConsumePrefix(&pc, "0x");
  absl::SimpleHexAtoi(pc, &place.pc);
  return place;
}

}  // namespace

absl::StatusOr<std::vector<ThreadPlace>> SurveyThreads(pid_t pid, size_t limit) {
  ASSIGN_OR_RETURN(std::vector<pid_t> tids, ptrace::ListThreads(pid));
  std::sort(tids.begin(), tids.end(), [pid](pid_t a, pid_t b) {
    if ((a == pid) != (b == pid)) return a == pid;
    return a < b;
  });
  if (tids.size() > limit) tids.resize(limit);
  std::vector<ThreadPlace> out;
  for (pid_t tid : tids) {
    absl::StatusOr<std::string> text =
        ptrace::ReadProcFile(absl::StrCat("/proc/", pid, "/task/", tid, "/syscall"));
    if (!text.ok()) continue;  // exited meanwhile
    out.push_back(ParseSyscallFile(tid, *text));
  }
  if (out.empty()) return absl::NotFoundError(absl::StrCat("no process ", pid));
  return out;
}

bool IsSafeBlockingSyscall(long nr) {
  const Named* n = Find(nr);
  return n != nullptr && n->safe;
}

std::string SyscallName(long nr) {
  const Named* n = Find(nr);
  return n != nullptr ? n->name : absl::StrCat("syscall ", nr);
}

std::string DescribeThreads(pid_t pid, const exec::SymbolResolver* symbols,
                            size_t limit) {
  absl::StatusOr<std::vector<ThreadPlace>> places = SurveyThreads(pid, limit);
  if (!places.ok()) return std::string(places.status().message());
  absl::StatusOr<std::vector<ptrace::Mapping>> maps = ptrace::ReadMaps(pid);
  std::vector<std::string> parts;
  for (const ThreadPlace& p : *places) {
    std::string where = absl::StrCat("tid ", p.tid, p.tid == pid ? " (main)" : "", ": ");
    if (p.running) {
      absl::StrAppend(&where, "running");
    } else {
      absl::StrAppend(&where, p.syscall >= 0
                                  ? absl::StrCat("blocked in ", SyscallName(p.syscall), "()")
                                  : std::string("stopped"));
      const exec::LoadedObject* object = nullptr;
      if (maps.ok() && symbols != nullptr) {
        for (const ptrace::Mapping& m : *maps) {
          if (p.pc >= m.start && p.pc < m.end) {
            for (const exec::LoadedObject& o : symbols->objects()) {
              if (o.path == m.path) object = &o;
            }
          }
        }
      }
      if (object != nullptr) {
        absl::StrAppend(&where, " at ", symbols->DescribeAddress(*object, p.pc));
      } else {
        absl::StrAppend(&where, " at 0x", absl::Hex(p.pc));
      }
    }
    parts.push_back(std::move(where));
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace procwarp::python
