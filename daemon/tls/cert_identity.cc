// See cert_identity.h.
#include "daemon/tls/cert_identity.h"

#include <grp.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pwd.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace procwarp {
namespace {

using procwarp::config::v1::CertificateMapping;

std::string SubjectOf(X509* certificate) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (bio == nullptr) return "";
  // RFC 2253 with control characters and non-ASCII escaped: the subject is
  // the client's text and ends up in logs and other users' terminals.
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(certificate), 0,
                     XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, size) : "";
}

std::string CommonNameOf(X509* certificate) {
  X509_NAME* name = X509_get_subject_name(certificate);
  int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return "";
  ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  int size = ASN1_STRING_to_UTF8(&utf8, value);
  if (size < 0) return "";
  std::string cn(reinterpret_cast<char*>(utf8), size);
  OPENSSL_free(utf8);
  return cn;
}

std::string Ia5String(const ASN1_IA5STRING* value) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                     ASN1_STRING_length(value));
}

template <typename T>
bool Contains(const std::vector<T>& values, const T& value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

// Same uid, gid, groups and admin bit: mappings that agree on them are one.
bool SameIdentity(const Identity& a, const Identity& b) {
  return a.uid == b.uid && a.admin == b.admin;
}

}  // namespace

CertificateNames NamesOf(X509* certificate) {
  CertificateNames names;
  names.subject = SubjectOf(certificate);
  names.common_name = CommonNameOf(certificate);
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* san = sk_GENERAL_NAME_value(sans, i);
      if (san->type == GEN_URI) {
        names.san_uris.push_back(Ia5String(san->d.uniformResourceIdentifier));
      } else if (san->type == GEN_DNS) {
        names.san_dns.push_back(Ia5String(san->d.dNSName));
      }
    }
    GENERAL_NAMES_free(sans);
  }
  return names;
}

absl::StatusOr<CertificateNames> NamesOfPem(absl::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> certificate(
      bio == nullptr ? nullptr
                     : PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr),
      X509_free);
  if (certificate == nullptr) {
    return absl::InvalidArgumentError("the client certificate is not PEM");
  }
  return NamesOf(certificate.get());
}

CertificateMapper::CertificateMapper(std::vector<CertificateMapping> mappings,
                                     std::optional<gid_t> admin_gid)
    : mappings_(std::move(mappings)), admin_gid_(admin_gid) {}

absl::Status CertificateMapper::Validate() const {
  for (size_t i = 0; i < mappings_.size(); ++i) {
    const CertificateMapping& m = mappings_[i];
    if (m.match_case() == CertificateMapping::MATCH_NOT_SET) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tls.mappings[", i, "] names no certificate (san_uri, san_dns or "
          "subject_cn)"));
    }
    if (m.identity_case() == CertificateMapping::IDENTITY_NOT_SET ||
        (m.identity_case() == CertificateMapping::kAdmin && !m.admin())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tls.mappings[", i, "] maps to no identity (user, uid or "
          "admin: true)"));
    }
  }
  return absl::OkStatus();
}

std::vector<const CertificateMapping*> CertificateMapper::Winners(
    const CertificateNames& names) const {
  // SAN URI, then SAN DNS, then subject CN: the first kind with a match wins.
  for (auto kind : {CertificateMapping::kSanUri, CertificateMapping::kSanDns,
                    CertificateMapping::kSubjectCn}) {
    std::vector<const CertificateMapping*> found;
    for (const CertificateMapping& m : mappings_) {
      if (m.match_case() != kind) continue;
      bool hit = (kind == CertificateMapping::kSanUri &&
                  Contains(names.san_uris, m.san_uri())) ||
                 (kind == CertificateMapping::kSanDns &&
                  Contains(names.san_dns, m.san_dns())) ||
                 (kind == CertificateMapping::kSubjectCn &&
                  !names.common_name.empty() &&
                  names.common_name == m.subject_cn());
      if (hit) found.push_back(&m);
    }
    if (!found.empty()) return found;
  }
  return {};
}

absl::StatusOr<Identity> CertificateMapper::Resolve(
    const CertificateMapping& mapping) const {
  Identity id;
  if (mapping.identity_case() == CertificateMapping::kAdmin) {
    id.uid = 0;
    id.gid = 0;
    id.admin = true;
    return id;
  }
  // getpwnam_r/getpwuid_r: other threads look users up too.
  struct passwd entry {};
  struct passwd* found = nullptr;
  std::vector<char> buffer(16384);
  int rc = mapping.identity_case() == CertificateMapping::kUser
               ? getpwnam_r(mapping.user().c_str(), &entry, buffer.data(),
                            buffer.size(), &found)
               : getpwuid_r(mapping.uid(), &entry, buffer.data(),
                            buffer.size(), &found);
  if (rc != 0 || found == nullptr) {
    if (mapping.identity_case() == CertificateMapping::kUser) {
      return absl::UnauthenticatedError(absl::StrCat(
          "the certificate maps to user '", mapping.user(),
          "', who does not exist on this host"));
    }
    // A bare uid without a passwd entry: its own gid, no groups.
    id.uid = mapping.uid();
    id.gid = mapping.uid();
  } else {
    id.uid = entry.pw_uid;
    id.gid = entry.pw_gid;
    // Groups as they are now (docs/remote.md: looked up at connect time).
    int count = 64;
    std::vector<gid_t> groups(count);
    while (getgrouplist(entry.pw_name, entry.pw_gid, groups.data(), &count) < 0) {
      groups.resize(count);
    }
    groups.resize(count);
    id.groups = std::move(groups);
  }
  id.admin = id.uid == 0 ||
             (admin_gid_.has_value() &&
              (id.gid == *admin_gid_ || Contains<gid_t>(id.groups, *admin_gid_)));
  return id;
}

absl::StatusOr<Identity> CertificateMapper::Map(
    const CertificateNames& names) const {
  std::vector<const CertificateMapping*> winners = Winners(names);
  if (winners.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the client certificate '", names.subject,
        "' is not mapped to a local identity (procwarpd config "
        "tls.mappings; SAN URIs [", absl::StrJoin(names.san_uris, ", "),
        "], SAN DNS [", absl::StrJoin(names.san_dns, ", "), "], CN '",
        names.common_name, "')"));
  }
  std::optional<Identity> chosen;
  for (const CertificateMapping* m : winners) {
    absl::StatusOr<Identity> id = Resolve(*m);
    if (!id.ok()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "the client certificate '", names.subject, "': ", id.status().message()));
    }
    if (chosen.has_value() && !SameIdentity(*chosen, *id)) {
      return absl::UnauthenticatedError(absl::StrCat(
          "the client certificate '", names.subject,
          "' matches mappings to different identities (uid ", chosen->uid,
          " and uid ", id->uid, "); fix tls.mappings"));
    }
    chosen = *std::move(id);
  }
  chosen->subject = names.subject;
  return *chosen;
}

}  // namespace procwarp
