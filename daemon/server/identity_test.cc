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

Identity Cert(const std::string& subject) {
  Identity id;
  id.uid = 65534;  // remote callers have no local uid that means anything
  id.subject = subject;
  return id;
}

TEST(IdentityTest, SameOwnerAgreesWithOwnerKey) {
  const Identity all[] = {Uid(0), Uid(1000), Uid(65534), Cert("CN=a"),
                          Cert("CN=b")};
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

TEST(IdentityTest, ACertificateNeverOwnsWhatAUidOwns) {
  // The remote caller's placeholder uid must not make it the local nobody.
  EXPECT_FALSE(Cert("CN=a").SameOwner(Uid(65534)));
  EXPECT_FALSE(Uid(65534).MayAccess(Cert("CN=a")));
  EXPECT_FALSE(Cert("CN=a").MayAccess(Cert("CN=b")));
}

TEST(IdentityTest, AdminsMayAccessAnything) {
  Identity root = Uid(0);
  root.admin = true;
  EXPECT_TRUE(root.MayAccess(Uid(1000)));
  EXPECT_TRUE(root.MayAccess(Cert("CN=a")));
  EXPECT_FALSE(Uid(1000).MayAccess(Uid(0)));
}

}  // namespace
}  // namespace procwarp
