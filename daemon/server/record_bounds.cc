// See record_bounds.h.
#include "daemon/server/record_bounds.h"

#include "absl/strings/str_cat.h"

namespace procwarp {

absl::Status CheckLabelBytes(
    const google::protobuf::Map<std::string, std::string>& labels,
    absl::string_view what) {
  size_t total = 0;
  for (const auto& [key, value] : labels) total += key.size() + value.size();
  if (total > kMaxLabelBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": labels take ", total, " bytes (keys and values); at most ",
        kMaxLabelBytes, " are kept per record"));
  }
  return absl::OkStatus();
}

absl::Status CheckArgvBytes(
    const google::protobuf::RepeatedPtrField<std::string>& argv,
    absl::string_view what) {
  size_t total = 0;
  for (const std::string& arg : argv) total += arg.size() + 1 + sizeof(char*);
  if (total > kMaxRecordArgvBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": argv takes ", total, " bytes; at most ", kMaxRecordArgvBytes,
        " (the usual ARG_MAX)"));
  }
  return absl::OkStatus();
}

}  // namespace procwarp
