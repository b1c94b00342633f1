// The client's checks of who serves the daemon's sockets (see daemon_peer.h).
#include "client/cc/daemon_peer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cc/socket_path.h"

namespace procwarp {
namespace {

// The command name of `pid` as the kernel keeps it (/proc/PID/comm), for
// error messages only. Whoever runs the peer chose that name, so anything
// but printable ASCII becomes '?': it must not reach a terminal raw.
std::string ProcessName(pid_t pid) {
  if (pid <= 0) return "";
  std::ifstream file(absl::StrCat("/proc/", pid, "/comm"));
  std::string name;
  if (!std::getline(file, name)) return "";
  for (char& c : name) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return name;
}

// "uid 1000 (pid 123, comm foo)", or without what is not known.
std::string DescribePeer(const PeerCredentials& peer) {
  if (peer.pid <= 0) return absl::StrCat("uid ", peer.uid, " (pid unknown)");
  std::string text = absl::StrCat("uid ", peer.uid, " (pid ", peer.pid);
  const std::string name = ProcessName(peer.pid);
  if (!name.empty()) absl::StrAppend(&text, ", comm ", name);
  return absl::StrCat(text, ")");
}

// `path` split at its last '/': {".", path} when there is none.
std::pair<std::string, std::string> SplitPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// Whether directories `a` and `b` are the same directory (same inode).
bool SameDirectory(const std::string& a, const std::string& b) {
  if (a == b) return true;
  struct stat sa, sb;
  if (stat(a.c_str(), &sa) != 0 || stat(b.c_str(), &sb) != 0) return false;
  return S_ISDIR(sa.st_mode) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

absl::StatusOr<PeerCredentials> GetPeerCredentials(int fd,
                                                   absl::string_view path) {
  ucred cred = {};
  socklen_t length = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    return absl::InternalError(
        absl::StrCat("getsockopt(SO_PEERCRED) on the connection to ", path,
                     " failed: ", strerror(errno)));
  }
  return PeerCredentials{.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
}

absl::StatusOr<uid_t> ParseUid(absl::string_view text,
                               absl::string_view what) {
  uint64_t value = 0;
  const bool digits_only =
      !text.empty() &&
      std::all_of(text.begin(), text.end(),
                  [](char c) { return absl::ascii_isdigit(c); });
  if (!digits_only || !absl::SimpleAtoi(text, &value) ||
      value >= std::numeric_limits<uid_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "='", absl::CHexEscape(text),
                     "' is not a uid (expected a decimal number such as 1000)"));
  }
  return static_cast<uid_t>(value);
}

absl::StatusOr<DaemonTrust> DaemonTrust::ForThisProcess(
    std::optional<uid_t> daemon_uid) {
  DaemonTrust trust;
  if (getresuid(&trust.ruid, &trust.euid, &trust.suid) != 0) {
    return absl::InternalError(
        absl::StrCat("getresuid() failed: ", strerror(errno)));
  }
  trust.daemon_uid = daemon_uid;
  if (!trust.daemon_uid.has_value()) {
    const char* value = secure_getenv(kDaemonUidEnvVar);
    if (value != nullptr && value[0] != '\0') {
      absl::StatusOr<uid_t> uid = ParseUid(value, kDaemonUidEnvVar);
      if (!uid.ok()) return uid.status();
      trust.daemon_uid = *uid;
    }
  }
  return trust;
}

absl::Status CheckDaemonPeer(const PeerCredentials& peer,
                             const DaemonTrust& trust,
                             absl::string_view socket_path) {
  if (peer.uid == 0) return absl::OkStatus();
  const bool one_uid = trust.ruid == trust.euid && trust.euid == trust.suid;
  if (one_uid && peer.uid == trust.euid) return absl::OkStatus();
  if (trust.daemon_uid.has_value() && peer.uid == *trust.daemon_uid) {
    return absl::OkStatus();
  }

  std::string trusted = one_uid ? "root or you" : "root";
  if (trust.daemon_uid.has_value()) {
    trusted = absl::StrCat(one_uid ? "root, you" : "root",
                           " or the trusted daemon uid ", *trust.daemon_uid);
  }
  std::string why;
  if (!one_uid && (peer.uid == trust.ruid || peer.uid == trust.euid ||
                   peer.uid == trust.suid)) {
    // A setuid program must not trust a daemon its invoker runs.
    why = absl::StrCat(" (this process's real, effective and saved uids differ: ",
                       trust.ruid, "/", trust.euid, "/", trust.suid,
                       ", so it trusts none of them)");
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "the socket ", socket_path, " is served by ", DescribePeer(peer),
      ", not by ", trusted, why,
      "; refusing to send your request; set ", kDaemonUidEnvVar, "=",
      peer.uid, " if you trust it"));
}

absl::StatusOr<DaemonSocket> ConnectToDaemon(const std::string& socket_path,
                                             const DaemonTrust& trust,
                                             absl::Duration timeout) {
  int error = 0;
  UniqueFd fd = ConnectUnixSocket(socket_path, timeout, &error);
  if (!fd.valid()) return DaemonConnectError(socket_path, error);
  absl::StatusOr<PeerCredentials> peer =
      GetPeerCredentials(fd.get(), socket_path);
  if (!peer.ok()) return peer.status();
  if (absl::Status checked = CheckDaemonPeer(*peer, trust, socket_path);
      !checked.ok()) {
    return checked;
  }
  return DaemonSocket{.fd = std::move(fd), .peer = *peer};
}

absl::StatusOr<std::string> SideSocketPath(const std::string& main_path,
                                           const std::string& reported) {
  const std::string expected = absl::StrCat(main_path, ".fds");
  if (reported == expected) return expected;
  const auto [main_dir, main_name] = SplitPath(main_path);
  const auto [reported_dir, reported_name] = SplitPath(reported);
  if (reported_name != absl::StrCat(main_name, ".fds") ||
      !SameDirectory(main_dir, reported_dir)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "procwarpd named '", reported,
        "' as its fd side socket, which is not next to its socket ",
        main_path, " (expected ", expected,
        "); refusing to connect there"));
  }
  return expected;
}

absl::StatusOr<UniqueFd> ConnectToSideSocket(const std::string& main_path,
                                             uid_t daemon_uid,
                                             const std::string& reported,
                                             absl::Duration timeout) {
  absl::StatusOr<std::string> path = SideSocketPath(main_path, reported);
  if (!path.ok()) return path.status();
  int error = 0;
  UniqueFd fd = ConnectUnixSocket(*path, timeout, &error);
  if (!fd.valid()) {
    return absl::UnavailableError(absl::StrCat(
        "connect(", *path, ") to procwarpd's fd side socket failed: ",
        error == EAGAIN ? "its listen backlog stayed full" : strerror(error)));
  }
  absl::StatusOr<PeerCredentials> peer = GetPeerCredentials(fd.get(), *path);
  if (!peer.ok()) return peer.status();
  if (peer->uid != daemon_uid) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the fd side socket ", *path, " is served by ", DescribePeer(*peer),
        ", not by uid ", daemon_uid, " which serves procwarpd's socket ",
        main_path, "; refusing to send anything there"));
  }
  return fd;
}

}  // namespace procwarp
