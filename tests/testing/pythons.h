// The Python interpreters the Python tests and benchmarks start targets with
// (docs/python.md, "Targets"): CPython 3.8-3.13 from pyenv (the first
// installed patch release of each minor version) and Debian's static
// /usr/bin/python3.11 — plus, for remote exec only, Debian's PyPy 3.9
// (/usr/bin/pypy3: PythonStack does not read PyPy). One list, so every
// Python test covers the same set.
#ifndef PROCWARP_TESTS_TESTING_PYTHONS_H_
#define PROCWARP_TESTS_TESTING_PYTHONS_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace procwarp::testing {

struct PythonPath {
  std::string id;     // "pyenv_3_12", "debian_3_11": fit for a test's name
  std::string label;  // "3.12 (pyenv)", "Debian /usr/bin/python3.11"
  std::string path;
  bool pypy = false;  // PyPy (exec only on a thread blocked in a system call)
};

// bin/python<minor> of the first pyenv version "<minor>.*" under
// /root/.pyenv/versions or $HOME/.pyenv/versions (Bazel may give tests
// another HOME); "" when there is none.
std::string PyenvPython(const std::string& minor);

// Every supported interpreter on this machine; writes a "SKIP:" line to
// stderr for each one that is absent.
std::vector<PythonPath> SupportedPythons();

// SupportedPythons() and Debian's /usr/bin/pypy3 (PyPy 3.9), which
// Exec.RunPython supports (docs/python.md, "PyPy"); a "SKIP:" line when it
// is absent.
std::vector<PythonPath> ExecPythons();

// `argv` run as in a container (docs/python.md, "Containers"): in a new pid
// and mount namespace (`unshare --pid --mount --fork --kill-child`), so the
// program is pid 1 there and the process the test starts is unshare.
std::vector<std::string> InContainer(const std::vector<std::string>& argv);

// The host pid of the only child of `parent` (unshare's program); 0 when it
// has none.
pid_t OnlyChildOf(pid_t parent);

}  // namespace procwarp::testing

#endif  // PROCWARP_TESTS_TESTING_PYTHONS_H_
