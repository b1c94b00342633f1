// See fault_injector.h.
#include "daemon/testing/fault_injector.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/server/log.h"
#include "daemon/util/fault_point.h"
#include "daemon/util/pidfd.h"

namespace procwarp {
namespace {

// Set once, before any thread exists (main), and never again.
std::string* fault_file = nullptr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void KillAtNamedStep(const char* operation, int step, int pidfd) {
  const std::string here = absl::StrCat(operation, ":", step);
  if (absl::StripAsciiWhitespace(ReadAll(*fault_file)) != here) return;
  absl::Status killed = SignalPidfd(pidfd, SIGKILL, -1, "the fault's target");
  // Dead, not just signalled: the step after this one must meet a dead
  // process, or the test would not test what it says.
  pollfd pfd = {pidfd, POLLIN, 0};
  while (poll(&pfd, 1, 5000) < 0 && errno == EINTR) {
  }
  LogInfo(absl::StrCat("test fault: ", here, ": SIGKILL: ", killed.ToString()));
  std::ofstream(*fault_file + ".fired", std::ios::app) << here << "\n";
}

}  // namespace

void InjectFaultsFromFile(const std::string& path) {
  fault_file = new std::string(path);
  InstallFaultHook(&KillAtNamedStep);
}

}  // namespace procwarp
