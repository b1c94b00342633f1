// See grpc_credentials.h.
#include "daemon/tls/grpc_credentials.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace procwarp {
namespace {

class FetchingCredentials final : public grpc::ServerCredentials {
 public:
  explicit FetchingCredentials(CurrentCredentials current)
      : current_(std::move(current)) {
    // After the base class's constructor, which initialised gRPC.
    c_credentials_ = grpc_ssl_server_credentials_create_with_options(
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, &Fetch,
            this));
  }
  ~FetchingCredentials() override {
    grpc_server_credentials_release(c_credentials_);
  }

  // Calls are authorised by the daemon's own code (caller_context.h), not
  // by a metadata processor.
  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  int AddPortToServer(const std::string& address, grpc_server* server) override {
    return grpc_server_add_http2_port(server, address.c_str(), c_credentials_);
  }

  // gRPC's fetcher: NEW with a config when the credentials changed since
  // gRPC last took them.
  static grpc_ssl_certificate_config_reload_status Fetch(
      void* user_data, grpc_ssl_server_certificate_config** config) {
    auto* self = static_cast<FetchingCredentials*>(user_data);
    std::shared_ptr<const procwarp::ServerCredentials> current =
        self->current_();
    absl::MutexLock lock(&self->mu_);
    if (current == nullptr || current == self->served_) {
      return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    }
    grpc_ssl_pem_key_cert_pair pair = {current->key_pem().c_str(),
                                       current->cert_pem().c_str()};
    // Copies the strings.
    *config = grpc_ssl_server_certificate_config_create(
        current->ca_pem().c_str(), &pair, 1);
    self->served_ = std::move(current);
    return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
  }

  const CurrentCredentials current_;
  grpc_server_credentials* c_credentials_ = nullptr;
  absl::Mutex mu_;
  std::shared_ptr<const procwarp::ServerCredentials> served_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> ReloadableGrpcCredentials(
    CurrentCredentials current) {
  return std::make_shared<FetchingCredentials>(std::move(current));
}

}  // namespace procwarp
