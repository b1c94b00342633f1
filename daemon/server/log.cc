// See log.h.
#include "daemon/server/log.h"

#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace procwarp {
namespace {

std::atomic<bool> to_journal{false};
absl::Mutex stderr_mu;

// JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected to our
// stderr; it only counts when stderr still is that stream.
bool StderrIsJournal() {
  const char* env = getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  std::vector<absl::string_view> parts = absl::StrSplit(env, ':');
  uint64_t dev = 0, ino = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &dev) ||
      !absl::SimpleAtoi(parts[1], &ino)) {
    return false;
  }
  struct stat st {};
  return fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

void WriteStderr(absl::string_view line) {
  absl::MutexLock lock(&stderr_mu);
  std::string text = absl::StrCat("procwarpd: ", line, "\n");
  fwrite(text.data(), 1, text.size(), stderr);
  fflush(stderr);
}

void Log(int priority, absl::string_view message) {
  if (to_journal.load()) {
    std::string m(message);
    sd_journal_send("MESSAGE=%s", m.c_str(), "PRIORITY=%d", priority,
                    "SYSLOG_IDENTIFIER=procwarpd", nullptr);
    return;
  }
  WriteStderr(message);
}

}  // namespace

void InitLogging() { to_journal.store(StderrIsJournal()); }

void LogInfo(absl::string_view message) { Log(LOG_INFO, message); }
void LogError(absl::string_view message) { Log(LOG_ERR, message); }

void Audit(absl::string_view op, const Identity& caller,
           const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<std::pair<std::string, std::string>> all = {
      {"OP", std::string(op)},
      {"CALLER_UID", absl::StrCat(caller.uid)},
      {"CALLER_PID", absl::StrCat(caller.pid)},
  };
  if (caller.remote()) {
    // A remote caller acts as its mapped uid; the log says who it really
    // was (docs/remote.md).
    all.push_back({"CALLER_REMOTE", "1"});
    all.push_back({"CALLER_SUBJECT", caller.subject});
    all.push_back({"CALLER_PEER", caller.peer_address});
  }
  all.insert(all.end(), fields.begin(), fields.end());

  std::string summary = absl::StrJoin(
      all, " ", [](std::string* out, const auto& kv) {
        absl::StrAppend(out, absl::AsciiStrToLower(kv.first), "=", kv.second);
      });
  if (!to_journal.load()) {
    WriteStderr(absl::StrCat("audit: ", summary));
    return;
  }
  // sd_journal_sendv takes "FIELD=value" iovecs; keep the strings alive.
  std::vector<std::string> entries = {
      absl::StrCat("MESSAGE=audit: ", summary), "PROCWARP_AUDIT=1",
      "PRIORITY=5", "SYSLOG_IDENTIFIER=procwarpd"};
  for (const auto& [key, value] : all) {
    entries.push_back(absl::StrCat("PROCWARP_", key, "=", value));
  }
  std::vector<iovec> iov;
  for (auto& e : entries) iov.push_back({e.data(), e.size()});
  sd_journal_sendv(iov.data(), iov.size());
}

}  // namespace procwarp
