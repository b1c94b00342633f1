// See reflection_admission.h.
#include "daemon/server/reflection_admission.h"

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/server/log.h"

namespace procwarp {
namespace {

constexpr char kReflectionPrefix[] = "/grpc.reflection.";

// Lives as long as the call; holds its slots until then.
class AdmissionInterceptor : public grpc::experimental::Interceptor {
 public:
  AdmissionInterceptor(const CallerResolver* callers,
                       grpc::experimental::ServerRpcInfo* info)
      : callers_(callers), info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::
                POST_RECV_INITIAL_METADATA)) {
      Admit();
    }
    methods->Proceed();
  }

 private:
  void Admit() {
    grpc::ServerContextBase* context = info_->server_context();
    auto session = callers_->SessionOf(context);
    absl::Status status = session.status();
    if (session.ok()) {
      auto admitted = callers_->Admit((*session)->identity, /*stream=*/true);
      if (admitted.ok()) {
        slots_.emplace(*std::move(admitted));
        return;
      }
      status = admitted.status();
    }
    LogError(absl::StrCat("cancelling ", info_->method(), ": ",
                          status.message()));
    context->TryCancel();
  }

  const CallerResolver* callers_;
  grpc::experimental::ServerRpcInfo* info_;
  std::optional<CallerResolver::CallSlots> slots_;
};

}  // namespace

grpc::experimental::Interceptor* ReflectionAdmission::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  if (!absl::StartsWith(info->method(), kReflectionPrefix)) return nullptr;
  return new AdmissionInterceptor(callers_, info);
}

}  // namespace procwarp
