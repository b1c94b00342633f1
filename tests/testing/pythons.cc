// See pythons.h.
#include "tests/testing/pythons.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace procwarp::testing {

std::string PyenvPython(const std::string& minor) {
  std::vector<std::string> roots = {"/root/.pyenv/versions"};
  if (const char* home = getenv("HOME"); home != nullptr) {
    roots.push_back(absl::StrCat(home, "/.pyenv/versions"));
  }
  for (const std::string& root : roots) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
      const std::string version = entry.path().filename().string();
      if (!absl::StartsWith(version, absl::StrCat(minor, "."))) continue;
      const std::string bin = absl::StrCat(entry.path().string(), "/bin/python", minor);
      if (access(bin.c_str(), X_OK) == 0) return bin;
    }
  }
  return "";
}

std::vector<PythonPath> SupportedPythons() {
  std::vector<PythonPath> out;
  for (int minor = 8; minor <= 13; ++minor) {
    const std::string version = absl::StrCat("3.", minor);
    const std::string path = PyenvPython(version);
    if (path.empty()) {
      fprintf(stderr, "SKIP: no CPython %s under ~/.pyenv/versions\n", version.c_str());
      continue;
    }
    out.push_back({absl::StrCat("pyenv_3_", minor), absl::StrCat(version, " (pyenv)"), path});
  }
  // Debian's: static, stripped, non-PIE, the C API in .dynsym.
  const std::string debian = "/usr/bin/python3.11";
  if (access(debian.c_str(), X_OK) == 0) {
    out.push_back({"debian_3_11", "Debian " + debian, debian});
  } else {
    fprintf(stderr, "SKIP: no %s\n", debian.c_str());
  }
  return out;
}

std::vector<PythonPath> ExecPythons() {
  std::vector<PythonPath> out = SupportedPythons();
  const std::string pypy = "/usr/bin/pypy3";
  if (access(pypy.c_str(), X_OK) == 0) {
    out.push_back({"pypy_3_9", "Debian PyPy " + pypy, pypy, /*pypy=*/true});
  } else {
    fprintf(stderr, "SKIP: no %s (the setup script installs pypy3)\n", pypy.c_str());
  }
  return out;
}

std::vector<std::string> InContainer(const std::vector<std::string>& argv) {
  std::vector<std::string> out = {"/usr/bin/unshare", "--pid", "--mount", "--fork",
                                  "--kill-child"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

pid_t OnlyChildOf(pid_t parent) {
  std::ifstream in(absl::StrCat("/proc/", parent, "/task/", parent, "/children"));
  pid_t child = 0;
  in >> child;
  return child;
}

}  // namespace procwarp::testing
