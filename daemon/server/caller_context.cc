// See caller_context.h.
#include "daemon/server/caller_context.h"

namespace procwarp {
namespace {

using grpc::experimental::InterceptionHookPoints;

// Lives exactly as long as one call: binds at initial metadata, unbinds when
// gRPC destroys it with the call.
class CallerInterceptor : public grpc::experimental::Interceptor {
 public:
  CallerInterceptor(CallerBindings* bindings,
                    grpc::experimental::ServerRpcInfo* info)
      : bindings_(bindings), info_(info) {}
  ~CallerInterceptor() override {
    if (bound_) bindings_->Unbind(info_->server_context());
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!bound_ && methods->QueryInterceptionHookPoint(
                       InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      bindings_->Bind(info_->server_context());
      bound_ = true;
    }
    methods->Proceed();
  }

 private:
  CallerBindings* bindings_;
  grpc::experimental::ServerRpcInfo* info_;
  bool bound_ = false;
};

class CallerInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallerInterceptorFactory(CallerBindings* bindings)
      : bindings_(bindings) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallerInterceptor(bindings_, info);
  }

 private:
  CallerBindings* bindings_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
CallerBindings::MakeInterceptorFactory() {
  return std::make_unique<CallerInterceptorFactory>(this);
}

void CallerBindings::Bind(const grpc::ServerContextBase* context) {
  auto session = sessions_->Resolve(context->peer());
  absl::MutexLock lock(&mu_);
  bound_.insert_or_assign(context, std::move(session));
}

void CallerBindings::Unbind(const grpc::ServerContextBase* context) {
  absl::MutexLock lock(&mu_);
  bound_.erase(context);
}

absl::StatusOr<std::shared_ptr<const Session>> CallerBindings::SessionOf(
    const grpc::ServerContextBase* context) const {
  absl::MutexLock lock(&mu_);
  auto it = bound_.find(context);
  if (it == bound_.end()) {
    return absl::UnauthenticatedError("call has no bound caller identity");
  }
  return it->second;
}

absl::StatusOr<Identity> CallerBindings::CallerOf(
    const grpc::ServerContextBase* context) const {
  auto session = SessionOf(context);
  if (!session.ok()) return session.status();
  return (*session)->identity;
}

}  // namespace procwarp
