// Ownership rules of Identity: who owns what, and who may act on it.
#include "daemon/server/identity.h"

#include "gtest/gtest.h"

namespace procwarp {
namespace {

Identity Uid(uid_t uid) {
  Identity id;
  id.uid = uid;
  id.gid = uid;
  return id;
}

// A remote caller whose certificate the config maps to `uid`.
Identity Cert(const std::string& subject, uid_t uid) {
  Identity id = Uid(uid);
  id.subject = subject;
  id.peer_address = "192.0.2.7:50412";
  return id;
}

TEST(IdentityTest, SameOwnerAgreesWithOwnerKey) {
  const Identity all[] = {Uid(0), Uid(1000), Uid(65534), Cert("CN=a", 1000),
                          Cert("CN=b", 1001)};
  for (const Identity& a : all) {
    for (const Identity& b : all) {
      EXPECT_EQ(a.SameOwner(b), a.OwnerKey() == b.OwnerKey())
          << a.OwnerKey() << " vs " << b.OwnerKey();
    }
  }
}

TEST(IdentityTest, ConnectionsOfOneUserShareOwnership) {
  Identity first = Uid(1000);
  first.pid = 10;
  Identity second = Uid(1000);
  second.pid = 20;
  second.groups = {5, 6};
  EXPECT_TRUE(first.SameOwner(second));
  EXPECT_TRUE(second.MayAccess(first));
}

TEST(IdentityTest, AMappedCertificateIsExactlyItsUid) {
  // docs/remote.md: the mapping produces the identity the unix path would,
  // so the same tables and limits apply; the subject only names it.
  EXPECT_TRUE(Cert("CN=a", 1000).SameOwner(Uid(1000)));
  EXPECT_TRUE(Uid(1000).MayAccess(Cert("CN=a", 1000)));
  EXPECT_TRUE(Cert("CN=a", 1000).remote());
  EXPECT_FALSE(Uid(1000).remote());
  EXPECT_FALSE(Cert("CN=a", 1000).MayAccess(Cert("CN=b", 1001)));
  EXPECT_FALSE(Cert("CN=a", 1000).MayAccess(Uid(65534)));
}

TEST(IdentityTest, AdminsMayAccessAnything) {
  Identity root = Uid(0);
  root.admin = true;
  EXPECT_TRUE(root.MayAccess(Uid(1000)));
  EXPECT_TRUE(root.MayAccess(Cert("CN=a", 1000)));
  EXPECT_FALSE(Uid(1000).MayAccess(Uid(0)));
}

}  // namespace
}  // namespace procwarp
