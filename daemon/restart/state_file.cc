// See state_file.h.
#include "daemon/restart/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {
namespace {

constexpr char kMagic[] = "PWSTATE\n";
constexpr size_t kMagicSize = 8;
constexpr size_t kHeaderSize = kMagicSize + 4 + 8 + 8;

uint64_t Fnv1a64(absl::string_view data) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

void PutLittleEndian(uint64_t value, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>(value >> (8 * i)));
}

void PutVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

uint64_t GetLittleEndian(absl::string_view data, size_t offset, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(data[offset + i]))
             << (8 * i);
  }
  return value;
}

}  // namespace

std::string EncodeStateFile(const procwarp::state::v1::DaemonState& state) {
  return EncodeStateFile(state, {});
}

std::string EncodeStateFile(const procwarp::state::v1::DaemonState& state,
                            const std::vector<std::string>& records) {
  std::string payload = state.SerializeAsString();
  // A repeated message field on the wire: per element its tag
  // (field number, length-delimited) and length, then its bytes.
  constexpr uint32_t kProcessesTag =
      (procwarp::state::v1::DaemonState::kProcessesFieldNumber << 3) | 2;
  for (const std::string& record : records) {
    PutVarint(kProcessesTag, &payload);
    PutVarint(record.size(), &payload);
    payload += record;
  }
  std::string out(kMagic, kMagicSize);
  PutLittleEndian(kStateFormatVersion, 4, &out);
  PutLittleEndian(payload.size(), 8, &out);
  PutLittleEndian(Fnv1a64(payload), 8, &out);
  out += payload;
  return out;
}

absl::StatusOr<procwarp::state::v1::DaemonState> ParseStateFile(
    absl::string_view bytes) {
  if (bytes.size() < kHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state file too short for its header (", bytes.size(), " of ",
        kHeaderSize, " bytes): truncated"));
  }
  if (bytes.substr(0, kMagicSize) != absl::string_view(kMagic, kMagicSize)) {
    return absl::InvalidArgumentError("not a procwarpd state file (bad magic)");
  }
  const uint64_t version = GetLittleEndian(bytes, kMagicSize, 4);
  if (version != kStateFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "state file has format version ", version, "; this daemon reads ",
        kStateFormatVersion));
  }
  const uint64_t length = GetLittleEndian(bytes, kMagicSize + 4, 8);
  const uint64_t checksum = GetLittleEndian(bytes, kMagicSize + 12, 8);
  absl::string_view payload = bytes.substr(kHeaderSize);
  if (payload.size() != length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state file payload is ", payload.size(), " bytes, the header says ",
        length, ": truncated or appended to"));
  }
  if (Fnv1a64(payload) != checksum) {
    return absl::InvalidArgumentError("state file checksum mismatch: corrupt");
  }
  procwarp::state::v1::DaemonState state;
  if (!state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError("state file payload does not decode");
  }
  return state;
}

absl::Status WriteFileAtomically(const std::string& dir, const std::string& name,
                                 absl::string_view bytes) {
  const std::string tmp = absl::StrCat(dir, "/.", name, ".tmp");
  const std::string path = absl::StrCat(dir, "/", name);
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                   0600));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open(", tmp, ")"));
  // An existing temporary file (left by a killed daemon) keeps its mode:
  // make sure it is 0600 before anything is in it.
  if (fchmod(fd.get(), 0600) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fchmod(", tmp, ", 0600)"));
  }
  while (!bytes.empty()) {
    ssize_t n = write(fd.get(), bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status s = ErrnoStatus(n < 0 ? errno : ENOSPC,
                                   absl::StrCat("write(", tmp, ")"));
      unlink(tmp.c_str());
      return s;
    }
    bytes.remove_prefix(n);
  }
  fd.Reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat("rename(", tmp, ", ", path, ")"));
    unlink(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadStateFile(const std::string& dir,
                                          const std::string& name) {
  const std::string path = absl::StrCat(dir, "/", name);
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open(", path, ")"));
  std::string out;
  char buffer[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("read(", path, ")"));
    if (n == 0) break;
    out.append(buffer, n);
    if (out.size() > kMaxStateFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " is larger than ", kMaxStateFileBytes, " bytes"));
    }
  }
  return out;
}

}  // namespace procwarp
