// See caller_context.h.
#include "daemon/server/caller_context.h"

namespace procwarp {

absl::StatusOr<std::shared_ptr<const Session>> CallerResolver::SessionOf(
    const grpc::ServerContextBase* context) const {
  return sessions_->Resolve(context->peer());
}

}  // namespace procwarp
