// What the attach backend reads about a target from /proc: its mappings
// (/proc/PID/maps), a few /proc/PID/status fields, its thread ids and its
// executable. Everything read here is written by the kernel, but it describes
// a process the caller controls, so it can change between two reads: callers
// use it for decisions that are re-checked by the kernel (ptrace, reads of the
// target's memory), never as proof.
#ifndef PROCWARP_DAEMON_PTRACE_PROC_INFO_H_
#define PROCWARP_DAEMON_PTRACE_PROC_INFO_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace procwarp::ptrace {

// One line of /proc/PID/maps.
struct Mapping {
  uint64_t start = 0;
  uint64_t end = 0;
  bool read = false;
  bool write = false;
  bool exec = false;
  bool shared = false;
  uint64_t offset = 0;
  uint64_t inode = 0;
  std::string dev;   // "fd:01"
  std::string path;  // "" for anonymous, "[vdso]", "/usr/lib/.../libc.so.6"
};

// Parses /proc/PID/maps text (exposed for tests).
absl::StatusOr<std::vector<Mapping>> ParseMaps(absl::string_view text);

// Reads and parses /proc/PID/maps.
absl::StatusOr<std::vector<Mapping>> ReadMaps(pid_t pid);

// The fields of /proc/TID/status the attach backend looks at.
struct ProcStatus {
  char state = '?';      // 'R', 'S', 'D', 'T', 't', 'Z', 'X'
  pid_t tgid = 0;
  pid_t ppid = 0;
  pid_t tracer_pid = 0;
  int seccomp = 0;       // 0 none, 1 strict, 2 filter
  std::string name;
};

// Reads /proc/TID/status (TID may be any thread of any process).
absl::StatusOr<ProcStatus> ReadStatus(pid_t tid);

// Thread ids listed in /proc/PID/task.
absl::StatusOr<std::vector<pid_t>> ListThreads(pid_t pid);

// True when /proc/PID/task/TID exists (TID is a thread of PID right now).
bool IsThreadOf(pid_t pid, pid_t tid);

// The target of /proc/PID/exe, or "?" when it cannot be read.
std::string ExePath(pid_t pid);

// Reads a whole small /proc file.
absl::StatusOr<std::string> ReadProcFile(const std::string& path);

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_PROC_INFO_H_
