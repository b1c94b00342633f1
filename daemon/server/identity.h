// Caller identity: who is on the other end of a connection, as the kernel
// vouches for it (SO_PEERCRED/SO_PEERGROUPS at connect time), and what that
// allows.
#ifndef PROCWARP_DAEMON_SERVER_IDENTITY_H_
#define PROCWARP_DAEMON_SERVER_IDENTITY_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/procwarp/v1/common.pb.h"

namespace procwarp {

struct Identity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups
  pid_t pid = 0;              // peer pid at connect time (0 if remote)
  bool admin = false;         // root or member of the admin group
  // Remote callers (mutual TLS, daemon/server/tls_listener.h) only: the
  // client certificate's subject and the peer's "ADDRESS:PORT". They are
  // for the audit log and status; they grant nothing and own nothing: a
  // certificate mapped to uid 1000 is uid 1000, exactly as a local caller.
  std::string subject;
  std::string peer_address;

  bool remote() const { return !peer_address.empty(); }

  // The key handles and limits are kept by: two connections of the same
  // uid, local or remote, share their processes and their limits.
  std::string OwnerKey() const;
  // OwnerKey() == other.OwnerKey(), without building the strings (tables
  // compare it for every entry).
  bool SameOwner(const Identity& other) const;

  // True when this caller may act on something owned by `owner`.
  bool MayAccess(const Identity& owner) const;

  procwarp::v1::Identity ToProto() const;
  static Identity FromProto(const procwarp::v1::Identity& proto);
};

// Reads the peer of a connected unix socket. `admin_gid` (if set) makes members
// of that group admins; uid 0 is always admin.
absl::StatusOr<Identity> ReadPeerIdentity(int socket_fd,
                                          std::optional<gid_t> admin_gid);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_IDENTITY_H_
