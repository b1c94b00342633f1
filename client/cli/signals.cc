// Signal parsing and naming for the CLI, based on glibc's own name table
// (sigabbrev_np) so no list of names is kept here.
#include "client/cli/signals.h"

#include <signal.h>
#include <string.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace procwarp::cli {

absl::StatusOr<int> ParseSignal(absl::string_view text) {
  int number = 0;
  if (absl::SimpleAtoi(text, &number)) {
    if (number >= 1 && number < NSIG) return number;
    return absl::InvalidArgumentError(
        absl::StrCat("signal number ", text, " is out of range 1..", NSIG - 1));
  }
  std::string name = absl::AsciiStrToUpper(text);
  if (absl::StartsWith(name, "SIG")) name.erase(0, 3);
  for (int signal = 1; signal < NSIG; ++signal) {
    const char* known = sigabbrev_np(signal);
    if (known != nullptr && name == known) return signal;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown signal '", text, "' (use a number or a name like TERM, KILL)"));
}

std::string SignalName(int signal) {
  const char* name = sigabbrev_np(signal);
  if (name == nullptr) return absl::StrCat("SIG", signal);
  return absl::StrCat("SIG", name);
}

}  // namespace procwarp::cli
