// See library_table.h.
#include "daemon/exec/library_table.h"

#include <poll.h>

#include "absl/strings/str_cat.h"
#include "daemon/util/handle_id.h"

namespace procwarp::exec {
namespace {

// A pidfd polls readable once its process has exited.
bool Exited(const UniqueFd& pidfd) {
  pollfd p = {pidfd.get(), POLLIN, 0};
  return poll(&p, 1, 0) != 0;
}

absl::Status Unknown(const std::string& id) {
  return absl::NotFoundError(absl::StrCat(
      "no library handle ", id,
      " (unknown, not yours, already unloaded, or its process exited)"));
}

}  // namespace

LibraryTable::Reservation::~Reservation() {
  if (table_ == nullptr) return;
  absl::MutexLock lock(&table_->mu_);
  auto it = table_->counts_.find(key_);
  if (it != table_->counts_.end() && --it->second == 0) table_->counts_.erase(it);
}

absl::StatusOr<LibraryTable::Reservation> LibraryTable::Reserve(
    const Identity& owner) {
  absl::MutexLock lock(&mu_);
  PurgeExited();
  std::string key = owner.OwnerKey();
  size_t& count = counts_[key];
  if (count >= max_per_identity_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "you hold ", count, " library handles, the most allowed (",
        max_per_identity_, "); unload some first (procwarp uninject HANDLE)"));
  }
  ++count;
  return Reservation(this, std::move(key));
}

std::string LibraryTable::Insert(Reservation reservation, LoadedLibrary library) {
  std::string id = NewHandleId();
  absl::MutexLock lock(&mu_);
  libraries_[id] = std::make_unique<LoadedLibrary>(std::move(library));
  reservation.table_ = nullptr;  // the handle keeps the count
  return id;
}

absl::StatusOr<std::unique_ptr<LoadedLibrary>> LibraryTable::Take(
    const std::string& id, const Identity& caller) {
  absl::MutexLock lock(&mu_);
  PurgeExited();
  auto it = libraries_.find(id);
  if (it == libraries_.end() || !caller.MayAccess(it->second->owner)) {
    return Unknown(id);
  }
  std::unique_ptr<LoadedLibrary> library = std::move(it->second);
  libraries_.erase(it);
  auto count = counts_.find(library->owner.OwnerKey());
  if (count != counts_.end() && --count->second == 0) counts_.erase(count);
  return library;
}

void LibraryTable::Restore(const std::string& id,
                           std::unique_ptr<LoadedLibrary> library) {
  absl::MutexLock lock(&mu_);
  ++counts_[library->owner.OwnerKey()];
  libraries_[id] = std::move(library);
}

size_t LibraryTable::CountFor(const Identity& owner) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(owner.OwnerKey());
  return it == counts_.end() ? 0 : it->second;
}

void LibraryTable::PurgeExited() {
  for (auto it = libraries_.begin(); it != libraries_.end();) {
    if (!Exited(it->second->pidfd)) {
      ++it;
      continue;
    }
    auto count = counts_.find(it->second->owner.OwnerKey());
    if (count != counts_.end() && --count->second == 0) counts_.erase(count);
    it = libraries_.erase(it);
  }
}

}  // namespace procwarp::exec
