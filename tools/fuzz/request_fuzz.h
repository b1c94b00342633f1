// What the request fuzzers share (docs/fuzzing.md): one fuzz input is one
// request of one RPC of a service, and each RPC of the service must have a
// check registered, so a new RPC without one stops every fuzz run.
#ifndef PROCWARP_TOOLS_FUZZ_REQUEST_FUZZ_H_
#define PROCWARP_TOOLS_FUZZ_REQUEST_FUZZ_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/server/identity.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace procwarp {

// Runs the daemon's checks of one request and asserts what must hold of
// their results (FuzzAssert).
using RequestCheck = std::function<void(const google::protobuf::Message&)>;

// Checks for every method of one service, by method name.
using RequestChecks = std::map<std::string, RequestCheck>;

// One fuzz input: the first byte picks a method of `service` (its index in
// the descriptor, modulo the count), the rest is its request in protobuf
// wire format (inputs that do not parse are skipped). Aborts, naming it,
// when a method of `service` has no entry in `checks`.
void FuzzServiceRequest(const google::protobuf::ServiceDescriptor& service,
                        const RequestChecks& checks, const uint8_t* data,
                        size_t size);

// Aborts with `what` unless `condition` holds: a crash libFuzzer reports,
// with the input that caused it.
void FuzzAssert(bool condition, absl::string_view what);

// A request check's status is OK or one a person can act on: a client-side
// code with a message, never INTERNAL, UNKNOWN or an empty message.
void AssertClientStatus(const absl::Status& status);

// The entry of a request whose only content is an id the owner's table
// looks up (or nothing): parsing it is all there is to fuzz.
void NothingToCheck(const google::protobuf::Message&);

// A listing with `all` set is PERMISSION_DENIED for a user and allowed for
// an admin; without it, allowed for both. `check(caller)` runs the check.
void AssertOnlyAdminsListAll(
    bool all, const std::function<absl::Status(const Identity&)>& check);

// Stops protobuf from logging the parse errors hostile input causes.
void QuietProtobuf();

// Callers to run checks with: an ordinary user and an admin.
const Identity& FuzzUser();
const Identity& FuzzAdmin();

}  // namespace procwarp

#endif  // PROCWARP_TOOLS_FUZZ_REQUEST_FUZZ_H_
