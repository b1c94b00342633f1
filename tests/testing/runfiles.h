// RunfilePath: where a Bazel data dependency of a test is at run time. One
// definition for every test helper library (the daemon harness, the attach
// targets), so a test may link several of them.
#ifndef PROCWARP_TESTS_TESTING_RUNFILES_H_
#define PROCWARP_TESTS_TESTING_RUNFILES_H_

#include <string>

namespace procwarp::testing {

// TEST_SRCDIR/procwarp/<relative> ("daemon/procwarpd") under `bazel test`;
// under `bazel run` (benchmarks) the absolute path in the runfiles tree
// beside the binary, so a daemon with another working directory finds it
// too; else <relative>.
std::string RunfilePath(const std::string& relative);

}  // namespace procwarp::testing

#endif  // PROCWARP_TESTS_TESTING_RUNFILES_H_
