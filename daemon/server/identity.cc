// See identity.h.
#include "daemon/server/identity.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"

namespace procwarp {

std::string Identity::OwnerKey() const { return absl::StrCat("uid:", uid); }

bool Identity::SameOwner(const Identity& other) const { return uid == other.uid; }

bool Identity::MayAccess(const Identity& owner) const {
  return admin || SameOwner(owner);
}

procwarp::v1::Identity Identity::ToProto() const {
  procwarp::v1::Identity proto;
  proto.set_uid(uid);
  proto.set_gid(gid);
  for (gid_t g : groups) proto.add_groups(g);
  proto.set_pid(pid);
  proto.set_subject(subject);
  proto.set_admin(admin);
  proto.set_peer_address(peer_address);
  proto.set_remote(remote());
  return proto;
}

Identity Identity::FromProto(const procwarp::v1::Identity& proto) {
  Identity id;
  id.uid = proto.uid();
  id.gid = proto.gid();
  id.groups.assign(proto.groups().begin(), proto.groups().end());
  id.pid = proto.pid();
  id.subject = proto.subject();
  id.admin = proto.admin();
  id.peer_address = proto.peer_address();
  return id;
}

absl::StatusOr<Identity> ReadPeerIdentity(int socket_fd,
                                          std::optional<gid_t> admin_gid) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoStatus(errno,
                       absl::StrCat("getsockopt(fd=", socket_fd, ", SO_PEERCRED)"));
  }
  Identity id;
  id.uid = cred.uid;
  id.gid = cred.gid;
  id.pid = cred.pid;

  // SO_PEERGROUPS gives the supplementary groups as they were at connect()
  // time, which /proc/PID/status cannot promise (the pid may be gone or
  // reused by then).
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t bytes = groups.size() * sizeof(gid_t);
    if (getsockopt(socket_fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(),
                   &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      break;
    }
    if (errno != ERANGE) {
      return ErrnoStatus(
          errno, absl::StrCat("getsockopt(fd=", socket_fd, ", SO_PEERGROUPS)"));
    }
    groups.resize(bytes / sizeof(gid_t) + 1);
  }
  id.groups = std::move(groups);
  id.admin = id.uid == 0 ||
             (admin_gid.has_value() &&
              (id.gid == *admin_gid ||
               std::find(id.groups.begin(), id.groups.end(), *admin_gid) !=
                   id.groups.end()));
  return id;
}

}  // namespace procwarp
