// RETURN_IF_ERROR / ASSIGN_OR_RETURN: propagate absl::Status without noise.
// Debian's Abseil (20220623) ships no such macros, so procwarp keeps this one
// small header.
#ifndef PROCWARP_DAEMON_UTIL_STATUS_MACROS_H_
#define PROCWARP_DAEMON_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PW_CONCAT_INNER_(a, b) a##b
#define PW_CONCAT_(a, b) PW_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) fails.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status pw_status_ = (expr);              \
    if (!pw_status_.ok()) return pw_status_;         \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns from an
// absl::StatusOr, returning its status from the enclosing function on error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  PW_ASSIGN_OR_RETURN_IMPL_(PW_CONCAT_(pw_statusor_, __LINE__), lhs, expr)

#define PW_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(statusor).value()

#endif  // PROCWARP_DAEMON_UTIL_STATUS_MACROS_H_
