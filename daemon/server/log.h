// Logging and the audit trail.
//
// Under systemd (JOURNAL_STREAM names our stderr) entries go to journald with
// structured fields; otherwise they are single lines on stderr. Every
// operation that changes a target goes through Audit(), so the audit trail is
// one greppable kind of entry: PROCWARP_AUDIT=1 in the journal, "audit:" on
// stderr.
#ifndef PROCWARP_DAEMON_SERVER_LOG_H_
#define PROCWARP_DAEMON_SERVER_LOG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "daemon/server/identity.h"

namespace procwarp {

// Decides once, from the environment, where logs go.
void InitLogging();

void LogInfo(absl::string_view message);
void LogError(absl::string_view message);

// One audit record: `op` done by `caller`, with extra fields (names are
// upper-case journal field suffixes, e.g. {"TARGET_PID", "123"}).
void Audit(absl::string_view op, const Identity& caller,
           const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_LOG_H_
