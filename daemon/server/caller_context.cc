// See caller_context.h.
#include "daemon/server/caller_context.h"

#include "absl/strings/str_cat.h"

namespace procwarp {

absl::StatusOr<std::shared_ptr<const Session>> CallerResolver::SessionOf(
    const grpc::ServerContextBase* context) const {
  const std::string peer = context->peer();
  const std::string address = PeerAddressOf(peer);
  absl::StatusOr<std::shared_ptr<const Session>> session =
      address.empty()       ? sessions_->Resolve(peer)
      : remote_ != nullptr  ? remote_->SessionOf(*context, address)
                            : absl::UnauthenticatedError(absl::StrCat(
                                  "no TCP listener for peer '", peer, "'"));
  if (session.ok() && !(*session)->refusal.empty()) {
    return absl::UnauthenticatedError((*session)->refusal);
  }
  return session;
}

absl::Status RequireLocal(const Session& session, absl::string_view call,
                          absl::string_view alternative) {
  if (!session.identity.remote()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      call, " works only for clients on the daemon's host (it moves memory "
      "or fds between processes of this host); from ",
      session.identity.peer_address, " use ", alternative,
      " (the C++ client falls back to it by itself)"));
}

absl::StatusOr<CallerResolver::CallSlots> CallerResolver::Admit(
    const Identity& caller, bool stream) const {
  CallSlots slots;
  if (calls_ != nullptr) {
    absl::StatusOr<SlotLimiter::Slot> call = calls_->Acquire(caller);
    if (!call.ok()) return call.status();
    slots.call.emplace(*std::move(call));
  }
  if (stream && streams_ != nullptr) {
    absl::StatusOr<SlotLimiter::Slot> held = streams_->Acquire(caller);
    if (!held.ok()) return held.status();
    slots.stream.emplace(*std::move(held));
  }
  return slots;
}

}  // namespace procwarp
