// The test-only side of fault points (daemon/util/fault_point.h): a hook
// driven by a file, so one daemon can be walked through every step of every
// operation by a test (tests/integration/fault_steps_test.cc).
//
// Linked only into //daemon:procwarpd_with_faults (testonly); the daemon
// that ships has neither this code nor the flag that enables it.
#ifndef PROCWARP_DAEMON_TESTING_FAULT_INJECTOR_H_
#define PROCWARP_DAEMON_TESTING_FAULT_INJECTOR_H_

#include <string>

namespace procwarp {

// From now on, each fault point reads `path`. When it holds "OPERATION:STEP"
// naming this point, the process the point names is SIGKILLed and the
// point waits (up to 5 s) until it is dead, then appends "OPERATION:STEP\n"
// to `path`.fired, so a test knows the step was reached. An empty or
// missing file injects nothing.
void InjectFaultsFromFile(const std::string& path);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TESTING_FAULT_INJECTOR_H_
