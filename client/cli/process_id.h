// Turns what a person typed for a process (a full id or a unique prefix of
// one) into the full id.
#ifndef PROCWARP_CLIENT_CLI_PROCESS_ID_H_
#define PROCWARP_CLIENT_CLI_PROCESS_ID_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cc/client.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp::cli {

// The id in `processes` equal to `prefix`, else the only one starting with
// it. NOT_FOUND when none matches, INVALID_ARGUMENT when `prefix` is empty
// or several match (the message lists them).
absl::StatusOr<std::string> MatchIdPrefix(
    absl::string_view prefix, const std::vector<v1::ProcessInfo>& processes);

// MatchIdPrefix over the processes the caller can list (every identity's for
// admins). An exact id the listing does not show is still accepted if the
// daemon knows it.
absl::StatusOr<std::string> ResolveProcessId(const Client& client,
                                             absl::string_view text);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_PROCESS_ID_H_
