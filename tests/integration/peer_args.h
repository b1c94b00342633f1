// The command line every peer program shares (a peer is a test's caller in
// its own process, usually unprivileged: see docs/architecture.md, Tests):
//
//   PEER --socket PATH [--uid U] [--gid G] [--groups G1,G2] [--NAME VALUE]...
//        OP ARGS...
//
// and the switch to that uid/gid. The switch happens before gRPC starts any
// thread, so every thread of the peer carries the caller's credentials when
// the daemon reads them with SO_PEERCRED.
#ifndef PROCWARP_TESTS_INTEGRATION_PEER_ARGS_H_
#define PROCWARP_TESTS_INTEGRATION_PEER_ARGS_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace procwarp::testing {

struct PeerArgs {
  std::string socket_path;
  // The --NAME VALUE pairs other than --socket, --uid, --gid and --groups,
  // keyed by NAME without the dashes.
  absl::flat_hash_map<std::string, std::string> flags;
  std::string op;
  std::vector<std::string> rest;  // what follows OP
};

// Parses the command line and becomes --uid/--gid/--groups (none given: stays
// who it is). Exits 2 when OP is missing and 3 when the switch fails, the exit
// codes the tests check for.
PeerArgs ParseArgsAndBecomeCaller(int argc, char** argv);

}  // namespace procwarp::testing

#endif  // PROCWARP_TESTS_INTEGRATION_PEER_ARGS_H_
