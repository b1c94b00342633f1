// Unguessable handle ids: 128 random bits from the kernel, as 32 hex digits.
// Ids are capabilities' names, never their proof: every use is still checked
// against the caller's identity.
#ifndef PROCWARP_DAEMON_UTIL_HANDLE_ID_H_
#define PROCWARP_DAEMON_UTIL_HANDLE_ID_H_

#include <string>

#include "absl/strings/string_view.h"

namespace procwarp {

std::string NewHandleId();

// True when `id` has the shape NewHandleId() produces.
bool IsWellFormedHandleId(absl::string_view id);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_UTIL_HANDLE_ID_H_
