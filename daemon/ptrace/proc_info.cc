// See proc_info.h.
#include "daemon/ptrace/proc_info.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::ptrace {

absl::StatusOr<std::string> ReadProcFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open(", path, ")"));
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("read(", path, ")"));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

namespace {

bool ParseHex(absl::string_view text, uint64_t* out) {
  return absl::SimpleHexAtoi(text, out);
}

}  // namespace

absl::StatusOr<std::vector<Mapping>> ParseMaps(absl::string_view text) {
  std::vector<Mapping> maps;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    // start-end perms offset dev inode [path]; the path may contain spaces.
    std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::MaxSplits(' ', 5), absl::SkipEmpty());
    if (f.size() < 5) {
      return absl::InternalError(absl::StrCat("malformed maps line: ", line));
    }
    Mapping m;
    std::pair<absl::string_view, absl::string_view> range =
        absl::StrSplit(f[0], absl::MaxSplits('-', 1));
    if (!ParseHex(range.first, &m.start) || !ParseHex(range.second, &m.end) ||
        f[1].size() < 4 || !ParseHex(f[2], &m.offset) ||
        !absl::SimpleAtoi(f[4], &m.inode)) {
      return absl::InternalError(absl::StrCat("malformed maps line: ", line));
    }
    m.read = f[1][0] == 'r';
    m.write = f[1][1] == 'w';
    m.exec = f[1][2] == 'x';
    m.shared = f[1][3] == 's';
    m.dev = std::string(f[3]);
    if (f.size() == 6) {
      m.path = std::string(absl::StripLeadingAsciiWhitespace(f[5]));
    }
    maps.push_back(std::move(m));
  }
  return maps;
}

absl::StatusOr<std::vector<Mapping>> ReadMaps(pid_t pid) {
  absl::StatusOr<std::string> text =
      ReadProcFile(absl::StrCat("/proc/", pid, "/maps"));
  if (!text.ok()) return text.status();
  return ParseMaps(*text);
}

absl::StatusOr<ProcStatus> ReadStatus(pid_t tid) {
  absl::StatusOr<std::string> text =
      ReadProcFile(absl::StrCat("/proc/", tid, "/status"));
  if (!text.ok()) return text.status();
  ProcStatus st;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    absl::string_view value = absl::StripAsciiWhitespace(kv.second);
    if (kv.first == "Name") {
      st.name = std::string(value);
    } else if (kv.first == "State" && !value.empty()) {
      st.state = value[0];
    } else if (kv.first == "Tgid") {
      (void)absl::SimpleAtoi(value, &st.tgid);
    } else if (kv.first == "PPid") {
      (void)absl::SimpleAtoi(value, &st.ppid);
    } else if (kv.first == "TracerPid") {
      (void)absl::SimpleAtoi(value, &st.tracer_pid);
    } else if (kv.first == "Seccomp") {
      (void)absl::SimpleAtoi(value, &st.seccomp);
    }
  }
  return st;
}

absl::StatusOr<std::vector<pid_t>> ListThreads(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, absl::StrCat("opendir(", path, ")"));
  std::vector<pid_t> tids;
  while (struct dirent* e = readdir(dir)) {
    pid_t tid = 0;
    if (absl::SimpleAtoi(e->d_name, &tid) && tid > 0) tids.push_back(tid);
  }
  closedir(dir);
  return tids;
}

bool IsThreadOf(pid_t pid, pid_t tid) {
  struct stat st;
  return stat(absl::StrCat("/proc/", pid, "/task/", tid).c_str(), &st) == 0;
}

std::string ExePath(pid_t pid) {
  char buf[4096];
  ssize_t n = readlink(absl::StrCat("/proc/", pid, "/exe").c_str(), buf,
                       sizeof(buf) - 1);
  if (n < 0) return "?";
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace procwarp::ptrace
