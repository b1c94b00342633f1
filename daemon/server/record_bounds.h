// Bounds on the bytes a caller stores in the daemon with a request: the
// labels of a Spawn, Exec or CreateThread and the argv a process record
// keeps. Every record is then small enough to travel in one response or
// event to anyone allowed to see it (a List page, an Events stream: see
// max_send_message_bytes), and the daemon's memory per record is bounded.
#ifndef PROCWARP_DAEMON_SERVER_RECORD_BOUNDS_H_
#define PROCWARP_DAEMON_SERVER_RECORD_BOUNDS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace procwarp {

// Labels: keys and values together.
inline constexpr size_t kMaxLabelBytes = 64 << 10;
// argv kept in a process record, counted as execve counts it (strings, NULs
// and pointers): the kernel's ARG_MAX with the usual 8 MiB stack, which
// execve enforces on argv and env together anyway.
inline constexpr size_t kMaxRecordArgvBytes = 2 << 20;

// INVALID_ARGUMENT naming `what` (e.g. "Spawn") when `labels` are larger
// than kMaxLabelBytes.
absl::Status CheckLabelBytes(
    const google::protobuf::Map<std::string, std::string>& labels,
    absl::string_view what);

// INVALID_ARGUMENT when `argv` is larger than kMaxRecordArgvBytes.
absl::Status CheckArgvBytes(
    const google::protobuf::RepeatedPtrField<std::string>& argv,
    absl::string_view what);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_RECORD_BOUNDS_H_
