// The Python interpreters the Python tests and benchmarks start targets with
// (docs/python.md, "Targets"): CPython 3.8-3.13 from pyenv (the first
// installed patch release of each minor version) and Debian's static
// /usr/bin/python3.11. One list, so every Python test covers the same set.
#ifndef PROCWARP_TESTS_TESTING_PYTHONS_H_
#define PROCWARP_TESTS_TESTING_PYTHONS_H_

#include <string>
#include <vector>

namespace procwarp::testing {

struct PythonPath {
  std::string id;     // "pyenv_3_12", "debian_3_11": fit for a test's name
  std::string label;  // "3.12 (pyenv)", "Debian /usr/bin/python3.11"
  std::string path;
};

// bin/python<minor> of the first pyenv version "<minor>.*" under
// /root/.pyenv/versions or $HOME/.pyenv/versions (Bazel may give tests
// another HOME); "" when there is none.
std::string PyenvPython(const std::string& minor);

// Every supported interpreter on this machine; writes a "SKIP:" line to
// stderr for each one that is absent.
std::vector<PythonPath> SupportedPythons();

}  // namespace procwarp::testing

#endif  // PROCWARP_TESTS_TESTING_PYTHONS_H_
