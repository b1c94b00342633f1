// How the CLI prints things: JSON for --json (always generated from protos),
// and the human-readable table, event lines and status text.
//
// Text that came from the daemon or from other users (argv, labels, ids,
// names, paths, error messages that echo them) is untrusted: another user's
// "\x1b]0;...\x07" in an argv must not retitle or drive an admin's terminal.
// Human output therefore prints every such string through EscapeForTerminal
// (or ShellJoin, which escapes the same way). JSON output needs nothing more:
// protobuf's JSON printer already writes every C0 control character, DEL and
// C1 control (and U+200E/F, U+2028-U+202E) as a \uXXXX escape (tested). Attached
// process output (run, attach) is the one thing printed raw, on purpose: it
// is the process's terminal stream.
#ifndef PROCWARP_CLIENT_CLI_OUTPUT_H_
#define PROCWARP_CLIENT_CLI_OUTPUT_H_

#include <google/protobuf/message.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli/cli_output.pb.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp::cli {

// `message` as one line of JSON with the .proto field names, defaults
// included (so a zero exit code or pid is visible), enums as names.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// Writes ToJson(message) and a newline to stdout.
absl::Status PrintJson(const google::protobuf::Message& message);

// `text` safe to print on a terminal: C0 control characters, DEL, C1 control
// characters (U+0080-U+009F), the Unicode bidirectional controls and
// line/paragraph separators, and bytes that are not valid UTF-8 become
// C-style escapes (\n, \t, \r, \x1b, \u202e), and a backslash becomes \\,
// so an escape in the output always means an escaped character. Printable
// ASCII and other valid UTF-8 pass unchanged.
std::string EscapeForTerminal(absl::string_view text);

// `argv` as one string a shell would split back into the same words. Words
// that EscapeForTerminal would change are written in bash's $'...' form with
// the same escapes, so they stay both safe to print and re-usable in bash.
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
