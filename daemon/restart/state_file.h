// The restart state file: the process table, written on every change so a
// restarted daemon can re-adopt what the old one managed
// (docs/architecture.md, "Restart without loss").
//
// On disk: "PWSTATE\n" (8 bytes), the format version (u32 little-endian),
// the payload length (u64 LE), an FNV-1a 64 checksum of the payload (u64
// LE), then the payload, a serialized DaemonState. The header makes a
// truncated, corrupt or foreign-version file an error instead of a
// half-parsed table (a protobuf cut at a field boundary still parses).
//
// ParseStateFile is a pure function of its input (no I/O, no globals), so it
// can be fuzzed directly.
#ifndef PROCWARP_DAEMON_RESTART_STATE_FILE_H_
#define PROCWARP_DAEMON_RESTART_STATE_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/procwarp/state/v1/state.pb.h"

namespace procwarp {

inline constexpr uint32_t kStateFormatVersion = 1;
// Larger files are refused unread (a table at every limit is far smaller).
inline constexpr uint64_t kMaxStateFileBytes = 256ull << 20;
inline constexpr char kStateFileName[] = "state.pb";

// The file's bytes for `state`.
std::string EncodeStateFile(const procwarp::state::v1::DaemonState& state);
// The same for `state` plus `records`, each a serialized ProcessRecord
// appended to its `processes` (what the daemon writes on every change: the
// records come encoded already).
std::string EncodeStateFile(const procwarp::state::v1::DaemonState& state,
                            const std::vector<std::string>& records);

// The state in `bytes`, or INVALID_ARGUMENT (bad magic, truncated, checksum
// mismatch, undecodable payload) / FAILED_PRECONDITION (another format
// version), with a message saying which.
absl::StatusOr<procwarp::state::v1::DaemonState> ParseStateFile(
    absl::string_view bytes);

// Writes `bytes` to dir/name atomically: a 0600 temporary file in `dir`,
// then rename(). No fsync: the file must survive the daemon, not the host
// (it lives under /run, which a reboot empties anyway).
absl::Status WriteFileAtomically(const std::string& dir,
                                 const std::string& name,
                                 absl::string_view bytes);

// The whole of dir/name (at most kMaxStateFileBytes), NOT_FOUND if absent.
absl::StatusOr<std::string> ReadStateFile(const std::string& dir,
                                          const std::string& name);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_RESTART_STATE_FILE_H_
