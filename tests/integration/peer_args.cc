#include "tests/integration/peer_args.h"

#include <grp.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace procwarp::testing {

PeerArgs ParseArgsAndBecomeCaller(int argc, char** argv) {
  PeerArgs parsed;
  int uid = -1, gid = -1;
  std::vector<gid_t> groups;
  int i = 1;
  for (; i + 1 < argc && absl::string_view(argv[i]).substr(0, 2) == "--";
       i += 2) {
    const std::string name = argv[i] + 2;
    const char* value = argv[i + 1];
    if (name == "socket") {
      parsed.socket_path = value;
    } else if (name == "uid") {
      uid = atoi(value);
    } else if (name == "gid") {
      gid = atoi(value);
    } else if (name == "groups") {
      for (absl::string_view g : absl::StrSplit(value, ',')) {
        gid_t group;
        if (absl::SimpleAtoi(g, &group)) groups.push_back(group);
      }
    } else {
      parsed.flags[name] = value;
    }
  }
  if (gid >= 0 && (setgroups(groups.size(), groups.data()) != 0 ||
                   setresgid(gid, gid, gid) != 0)) {
    exit(3);
  }
  if (uid >= 0 && setresuid(uid, uid, uid) != 0) exit(3);
  if (i >= argc) exit(2);
  parsed.op = argv[i++];
  parsed.rest.assign(argv + i, argv + argc);
  return parsed;
}

}  // namespace procwarp::testing
