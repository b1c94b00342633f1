// Process id prefix resolution for the CLI (see process_id.h).
#include "client/cli/process_id.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace procwarp::cli {

absl::StatusOr<std::string> MatchIdPrefix(
    absl::string_view prefix, const std::vector<v1::ProcessInfo>& processes) {
  if (prefix.empty()) return absl::InvalidArgumentError("empty process id");
  std::vector<std::string> matches;
  for (const v1::ProcessInfo& process : processes) {
    if (process.id() == prefix) return process.id();
    if (absl::StartsWith(process.id(), prefix)) matches.push_back(process.id());
  }
  if (matches.size() == 1) return matches[0];
  if (matches.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no process with id or id prefix '", prefix, "'"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("process id prefix '", prefix, "' is ambiguous: it matches ",
                   absl::StrJoin(matches, ", ")));
}

absl::StatusOr<std::string> ResolveProcessId(const Client& client,
                                             absl::string_view text) {
  // Everyone's processes when the daemon allows it (admins), else our own.
  absl::StatusOr<std::vector<v1::ProcessInfo>> processes = client.List(true);
  if (processes.status().code() == absl::StatusCode::kPermissionDenied) {
    processes = client.List(false);
  }
  if (!processes.ok()) return processes.status();
  absl::StatusOr<std::string> id = MatchIdPrefix(text, *processes);
  if (id.status().code() == absl::StatusCode::kNotFound) {
    if (client.GetProcess(std::string(text)).ok()) return std::string(text);
  }
  return id;
}

}  // namespace procwarp::cli
