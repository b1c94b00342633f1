// See caller_context.h.
#include "daemon/server/caller_context.h"

namespace procwarp {

absl::StatusOr<std::shared_ptr<const Session>> CallerResolver::SessionOf(
    const grpc::ServerContextBase* context) const {
  return sessions_->Resolve(context->peer());
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
