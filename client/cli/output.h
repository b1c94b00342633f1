// How the CLI prints things: JSON for --json (always generated from protos),
// and the human-readable table, event lines and status text.
#ifndef PROCWARP_CLIENT_CLI_OUTPUT_H_
#define PROCWARP_CLIENT_CLI_OUTPUT_H_

#include <google/protobuf/message.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/cli_output.pb.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp::cli {

// `message` as one line of JSON with the .proto field names, defaults
// included (so a zero exit code or pid is visible), enums as names.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// Writes ToJson(message) and a newline to stdout.
absl::Status PrintJson(const google::protobuf::Message& message);

// `argv` as one string a shell would split back into the same words.
std::string ShellJoin(const std::vector<std::string>& argv);

// The `ps` table: ID (first 12 characters), PID, STATE, EXIT, UID, COMMAND.
std::string FormatProcessTable(const std::vector<v1::ProcessInfo>& processes);

// One line describing `event` (time, kind, id, pid, command, exit status),
// without the newline.
std::string FormatEvent(const v1::ProcessEvent& event);

// The multi-line human form of `procwarp status`.
std::string FormatStatus(const StatusOutput& status);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_OUTPUT_H_
