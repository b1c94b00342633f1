// Human and JSON output of the CLI (see output.h).
#include "client/cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <array>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/cc/process.h"
#include "client/cli/signals.h"

namespace procwarp::cli {
namespace {

// Long enough to be unique among a person's processes, short enough for a
// table; any unique prefix is accepted back.
constexpr size_t kShortIdLength = 12;

// The length of the valid UTF-8 sequence at the start of `text` (1 to 4)
// with its code point in *code_point, or 0 if it is not valid UTF-8 (stray
// continuation byte, truncated or overlong sequence, surrogate, beyond
// U+10FFFF).
size_t DecodeUtf8(absl::string_view text, char32_t* code_point) {
  const auto byte = [&](size_t i) {
    return static_cast<unsigned char>(text[i]);
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) {
    *code_point = lead;
    return 1;
  }
  size_t length;
  unsigned char low = 0x80, high = 0xbf;  // allowed range of the 2nd byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;   // overlong
    if (lead == 0xed) high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;   // overlong
    if (lead == 0xf4) high = 0x8f;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length || byte(1) < low || byte(1) > high) return 0;
  char32_t value = lead & (0x7f >> length);
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    value = (value << 6) | (byte(i) & 0x3f);
  }
  *code_point = value;
  return length;
}

// Code points a terminal acts on or that reorder what it shows: C0 controls,
// DEL, C1 controls, and the Unicode bidirectional controls and line and
// paragraph separators.
bool MustEscape(char32_t c) {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x061c ||
         c == 0x200e || c == 0x200f || (c >= 0x2028 && c <= 0x202e) ||
         (c >= 0x2066 && c <= 0x2069);
}

// Appends `text` to `out` escaped as EscapeForTerminal describes; inside
// bash's $'...' (`dollar_quoted`) a single quote is escaped too.
void AppendEscaped(absl::string_view text, bool dollar_quoted,
                   std::string& out) {
  while (!text.empty()) {
    char32_t c = 0;
    const size_t length = DecodeUtf8(text, &c);
    if (length == 0) {
      absl::StrAppendFormat(&out, "\\x%02x",
                            static_cast<unsigned char>(text[0]));
      text.remove_prefix(1);
      continue;
    }
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\'' && dollar_quoted) {
      out += "\\'";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x80 && MustEscape(c)) {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<uint32_t>(c));
    } else if (MustEscape(c)) {
      absl::StrAppendFormat(&out, "\\u%04x", static_cast<uint32_t>(c));
    } else {
      out.append(text.data(), length);
    }
    text.remove_prefix(length);
  }
}

// Whether `text` holds anything EscapeForTerminal escapes other than a
// backslash (which is literal, and so unambiguous, inside '...').
bool NeedsEscaping(absl::string_view text) {
  while (!text.empty()) {
    char32_t c = 0;
    const size_t length = DecodeUtf8(text, &c);
    if (length == 0 || MustEscape(c)) return true;
    text.remove_prefix(length);
  }
  return false;
}

bool IsShellSafe(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("@%+=:,./_-").find(c) != std::string_view::npos;
}

std::string ShellQuote(const std::string& word) {
  if (!word.empty() && std::all_of(word.begin(), word.end(), IsShellSafe)) {
    return word;
  }
  if (NeedsEscaping(word)) {
    std::string quoted = "$'";
    AppendEscaped(word, /*dollar_quoted=*/true, quoted);
    return quoted + "'";
  }
  std::string quoted = "'";
  for (char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string StateName(v1::ProcessState state) {
  switch (state) {
    case v1::PROCESS_STATE_RUNNING:
      return "running";
    case v1::PROCESS_STATE_EXITED:
      return "exited";
    default:
      return "unknown";
  }
}

// "0", "3", "SIGKILL", "SIGSEGV+core", or "-" while running.
std::string ExitColumn(const v1::ProcessInfo& process) {
  if (process.state() != v1::PROCESS_STATE_EXITED) return "-";
  const v1::ExitStatus& exit = process.exit_status();
  std::string text = exit.how_case() == v1::ExitStatus::kSignal
                         ? SignalName(exit.signal())
                         : absl::StrCat(exit.code());
  if (exit.core_dumped()) absl::StrAppend(&text, "+core");
  return text;
}

std::string EventKindName(v1::ProcessEvent::Kind kind) {
  switch (kind) {
    case v1::ProcessEvent::KIND_STARTED:
      return "started";
    case v1::ProcessEvent::KIND_EXITED:
      return "exited";
    case v1::ProcessEvent::KIND_REMOVED:
      return "removed";
    default:
      return "unknown";
  }
}

std::string FormatUnixNs(int64_t unix_ns) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixNanos(unix_ns),
                          absl::UTCTimeZone());
}

std::string FormatIdentity(const v1::Identity& identity) {
  std::string text =
      absl::StrCat("uid ", identity.uid(), ", gid ", identity.gid());
  if (!identity.groups().empty()) {
    absl::StrAppend(&text, ", groups ", absl::StrJoin(identity.groups(), ","));
  }
  if (identity.pid() != 0) absl::StrAppend(&text, ", pid ", identity.pid());
  if (identity.admin()) absl::StrAppend(&text, ", admin");
  if (identity.remote()) {
    absl::StrAppend(&text, "; remote: certificate ",
                    EscapeForTerminal(identity.subject()), " from ",
                    EscapeForTerminal(identity.peer_address()));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat(
        "cannot print ", message.GetTypeName(), " as JSON: ", status.ToString()));
  }
  return json;
}

absl::Status PrintJson(const google::protobuf::Message& message) {
  absl::StatusOr<std::string> json = ToJson(message);
  if (!json.ok()) return json.status();
  std::cout << *json << std::endl;
  return absl::OkStatus();
}

std::string EscapeForTerminal(absl::string_view text) {
  std::string escaped;
  escaped.reserve(text.size());
  AppendEscaped(text, /*dollar_quoted=*/false, escaped);
  return escaped;
}

std::string ShellJoin(const std::vector<std::string>& argv) {
  std::vector<std::string> words;
  words.reserve(argv.size());
  for (const std::string& arg : argv) words.push_back(ShellQuote(arg));
  return absl::StrJoin(words, " ");
}

std::string FormatProcessTable(const std::vector<v1::ProcessInfo>& processes) {
  using Row = std::array<std::string, 6>;
  std::vector<Row> rows = {{"ID", "PID", "STATE", "EXIT", "UID", "COMMAND"}};
  for (const v1::ProcessInfo& process : processes) {
    rows.push_back({EscapeForTerminal(process.id().substr(0, kShortIdLength)),
                    absl::StrCat(process.pid()), StateName(process.state()),
                    ExitColumn(process), absl::StrCat(process.uid()),
                    ShellJoin({process.argv().begin(), process.argv().end()})});
  }
  // Every column but the last is padded to its widest cell.
  std::array<size_t, 6> widths = {};
  for (const Row& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string table;
  for (const Row& row : rows) {
    for (size_t i = 0; i + 1 < row.size(); ++i) {
      absl::StrAppendFormat(&table, "%-*s  ", widths[i], row[i]);
    }
    absl::StrAppend(&table, row.back(), "\n");
  }
  return table;
}

std::string FormatEvent(const v1::ProcessEvent& event) {
  const v1::ProcessInfo& process = event.process();
  std::string line = absl::StrCat(
      FormatUnixNs(event.unix_ns()), " ", EventKindName(event.kind()), " ",
      EscapeForTerminal(process.id()), " pid=", process.pid());
  if (event.kind() == v1::ProcessEvent::KIND_EXITED) {
    absl::StrAppend(&line, " ", DescribeExitStatus(process.exit_status()));
  }
  absl::StrAppend(&line, " ",
                  ShellJoin({process.argv().begin(), process.argv().end()}));
  return line;
}

std::string FormatStatus(const StatusOutput& output) {
  const v1::GetStatusResponse& status = output.status();
  const absl::Duration uptime =
      absl::Trunc(absl::Milliseconds(status.uptime_ms()), absl::Seconds(1));
  return absl::StrCat(
      "daemon:     procwarpd ", EscapeForTerminal(output.version().version()),
      " (pid ", status.daemon_pid(), ", api ",
      EscapeForTerminal(absl::StrJoin(output.version().api_versions(), ",")),
      ")\n", output.remote() ? "host:       " : "socket:     ",
      EscapeForTerminal(output.socket_path()),
      output.context().empty()
          ? ""
          : absl::StrCat(" (context ", EscapeForTerminal(output.context()), ")"),
      "\n",
      "uptime:     ",
      uptime == absl::ZeroDuration() ? "0s" : absl::FormatDuration(uptime),
      "\n",
      "clients:    ", status.clients(), "\n",
      "processes:  ", status.processes(), " (", status.running_processes(),
      " running)\n",
      "caller:     ", FormatIdentity(status.caller()), "\n");
}

}  // namespace procwarp::cli
