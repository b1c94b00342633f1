// See request_fuzz.h.
#include "tools/fuzz/request_fuzz.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <set>

#include "google/protobuf/message.h"
#include "google/protobuf/stubs/logging.h"

namespace procwarp {
namespace {

void CheckEveryMethodHasACheck(const google::protobuf::ServiceDescriptor& service,
                               const RequestChecks& checks) {
  for (int i = 0; i < service.method_count(); ++i) {
    const std::string& name = service.method(i)->name();
    if (checks.count(name) == 0) {
      std::fprintf(stderr,
                   "%s.%s has no request check in its fuzzer: add one (or an "
                   "entry saying it has nothing to check)\n",
                   service.full_name().c_str(), name.c_str());
      std::abort();
    }
  }
}

}  // namespace

void QuietProtobuf() {
  // Hostile input makes protobuf log every parse error; that is the point.
  static bool quiet = (google::protobuf::SetLogHandler(
                           [](google::protobuf::LogLevel, const char*, int,
                              const std::string&) {}),
                       true);
  (void)quiet;
}

void FuzzAssert(bool condition, absl::string_view what) {
  if (condition) return;
  std::fprintf(stderr, "fuzz assertion failed: %.*s\n",
               static_cast<int>(what.size()), what.data());
  std::abort();
}

void AssertClientStatus(const absl::Status& status) {
  if (status.ok()) return;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
      FuzzAssert(!status.message().empty(), "an error without a message");
      return;
    default:
      FuzzAssert(false, status.ToString());
  }
}

void NothingToCheck(const google::protobuf::Message&) {}

void AssertOnlyAdminsListAll(
    bool all, const std::function<absl::Status(const Identity&)>& check) {
  absl::Status user = check(FuzzUser());
  AssertClientStatus(user);
  FuzzAssert(all ? absl::IsPermissionDenied(user) : user.ok(),
             "a user may list everyone's handles, or not its own");
  FuzzAssert(check(FuzzAdmin()).ok(), "an admin may not list");
}

const Identity& FuzzUser() {
  static const Identity* user = [] {
    auto* identity = new Identity;
    identity->uid = 1000;
    identity->gid = 1000;
    identity->groups = {1000, 27};
    identity->pid = 4242;
    return identity;
  }();
  return *user;
}

const Identity& FuzzAdmin() {
  static const Identity* admin = [] {
    auto* identity = new Identity;
    identity->admin = true;
    identity->pid = 1;
    return identity;
  }();
  return *admin;
}

void FuzzServiceRequest(const google::protobuf::ServiceDescriptor& service,
                        const RequestChecks& checks, const uint8_t* data,
                        size_t size) {
  static std::set<const google::protobuf::ServiceDescriptor*>* checked =
      new std::set<const google::protobuf::ServiceDescriptor*>;
  if (checked->insert(&service).second) {
    QuietProtobuf();
    CheckEveryMethodHasACheck(service, checks);
  }
  if (size == 0 || service.method_count() == 0) return;
  const google::protobuf::MethodDescriptor* method =
      service.method(data[0] % service.method_count());
  const google::protobuf::Message* prototype =
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(
          method->input_type());
  std::unique_ptr<google::protobuf::Message> request(prototype->New());
  if (!request->ParseFromArray(data + 1, static_cast<int>(size - 1))) return;
  checks.at(method->name())(*request);
}

}  // namespace procwarp
