// CertificateMapper: which mapping a certificate's names select (SAN URI,
// then SAN DNS, then CN), what identity that gives, and the refusals.
#include "daemon/tls/cert_identity.h"

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace procwarp {
namespace {

using ::testing::HasSubstr;
using procwarp::config::v1::CertificateMapping;

CertificateMapping Mapping(const std::string& text) {
  CertificateMapping m;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &m)) << text;
  return m;
}

CertificateMapper Mapper(const std::vector<std::string>& texts,
                         std::optional<gid_t> admin_gid = std::nullopt) {
  std::vector<CertificateMapping> mappings;
  for (const auto& t : texts) mappings.push_back(Mapping(t));
  return CertificateMapper(mappings, admin_gid);
}

CertificateNames Names(std::vector<std::string> uris, std::vector<std::string> dns,
                       std::string cn) {
  return {.subject = "CN=" + cn,
          .san_uris = std::move(uris),
          .san_dns = std::move(dns),
          .common_name = cn};
}

TEST(CertificateMapperTest, SanUriWinsOverDnsWhichWinsOverCn) {
  CertificateMapper mapper = Mapper({
      R"(subject_cn: "alice" uid: 1003)",
      R"(san_dns: "alice.example" uid: 1002)",
      R"(san_uri: "urn:procwarp:user:alice" uid: 1001)",
  });
  auto all = mapper.Map(Names({"urn:procwarp:user:alice"}, {"alice.example"}, "alice"));
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->uid, 1001u);
  auto dns_and_cn = mapper.Map(Names({"urn:other"}, {"alice.example"}, "alice"));
  ASSERT_TRUE(dns_and_cn.ok());
  EXPECT_EQ(dns_and_cn->uid, 1002u);
  auto cn_only = mapper.Map(Names({}, {}, "alice"));
  ASSERT_TRUE(cn_only.ok());
  EXPECT_EQ(cn_only->uid, 1003u);
  EXPECT_EQ(cn_only->subject, "CN=alice");
  EXPECT_FALSE(cn_only->admin);
}

TEST(CertificateMapperTest, UnmappedIsUnauthenticatedNamingTheSubject) {
  CertificateMapper mapper = Mapper({R"(subject_cn: "alice" uid: 1001)"});
  auto refused = mapper.Map(Names({"urn:x"}, {"bob.example"}, "bob"));
  EXPECT_TRUE(absl::IsUnauthenticated(refused.status()));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("'CN=bob'"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("bob.example"));
  // An empty CN never matches an empty subject_cn.
  CertificateMapper empty_cn = Mapper({R"(subject_cn: "" uid: 1001)"});
  EXPECT_FALSE(empty_cn.Map(Names({}, {}, "")).ok());
}

TEST(CertificateMapperTest, TwoIdentitiesForOneNameAreRefused) {
  CertificateMapper mapper = Mapper({
      R"(san_uri: "urn:a" uid: 1001)",
      R"(san_uri: "urn:b" uid: 1002)",
  });
  auto refused = mapper.Map(Names({"urn:a", "urn:b"}, {}, "x"));
  EXPECT_TRUE(absl::IsUnauthenticated(refused.status()));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("different"));
  // The same identity twice is fine.
  CertificateMapper same = Mapper({R"(san_uri: "urn:a" uid: 1001)",
                                   R"(san_uri: "urn:b" uid: 1001)"});
  EXPECT_TRUE(same.Map(Names({"urn:a", "urn:b"}, {}, "x")).ok());
}

TEST(CertificateMapperTest, UsersAreLookedUpAndAdminIsRoot) {
  CertificateMapper mapper = Mapper({
      R"(subject_cn: "n" user: "nobody")",
      R"(subject_cn: "a" admin: true)",
      R"(subject_cn: "ghost" user: "no-such-user-procwarp")",
      R"(subject_cn: "bare" uid: 4000000)",
  });
  auto nobody = mapper.Map(Names({}, {}, "n"));
  ASSERT_TRUE(nobody.ok()) << nobody.status();
  EXPECT_EQ(nobody->uid, 65534u);
  EXPECT_FALSE(nobody->groups.empty());
  auto admin = mapper.Map(Names({}, {}, "a"));
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(admin->uid, 0u);
  EXPECT_TRUE(admin->admin);
  auto ghost = mapper.Map(Names({}, {}, "ghost"));
  EXPECT_TRUE(absl::IsUnauthenticated(ghost.status()));
  EXPECT_THAT(std::string(ghost.status().message()), HasSubstr("does not exist"));
  auto bare = mapper.Map(Names({}, {}, "bare"));
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->gid, 4000000u);
  EXPECT_TRUE(bare->groups.empty());
}

TEST(CertificateMapperTest, AdminGroupMembershipMakesAnAdminAsLocally) {
  // nobody's primary group as the admin group: nobody is then an admin.
  CertificateMapper mapper =
      Mapper({R"(subject_cn: "n" user: "nobody")"}, /*admin_gid=*/65534);
  auto nobody = mapper.Map(Names({}, {}, "n"));
  ASSERT_TRUE(nobody.ok());
  EXPECT_TRUE(nobody->admin);
}

TEST(CertificateMapperTest, ValidateNamesIncompleteMappings) {
  EXPECT_TRUE(Mapper({R"(uid: 1)"}).Validate().message().find("mappings[0]") !=
              absl::string_view::npos);
  EXPECT_FALSE(Mapper({R"(subject_cn: "x")"}).Validate().ok());
  EXPECT_FALSE(Mapper({R"(subject_cn: "x" admin: false)"}).Validate().ok());
  EXPECT_TRUE(Mapper({R"(subject_cn: "x" admin: true)"}).Validate().ok());
}

}  // namespace
}  // namespace procwarp
