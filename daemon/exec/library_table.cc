// See library_table.h.
#include "daemon/exec/library_table.h"

#include <poll.h>

#include "absl/strings/str_cat.h"

namespace procwarp::exec {
namespace {

// A pidfd polls readable once its process has exited.
bool Exited(const UniqueFd& pidfd) {
  pollfd p = {pidfd.get(), POLLIN, 0};
  return poll(&p, 1, 0) != 0;
}

HandleTableOptions LibraryOptions(size_t max_per_identity) {
  return {
      .noun = "library handle",
      .not_found_note =
          " (unknown, not yours, already unloaded, or its process exited)",
      .max_per_owner = max_per_identity,
      .how_to_free = "unload some first (procwarp uninject HANDLE)",
  };
}

}  // namespace

LibraryTable::LibraryTable(size_t max_per_identity)
    : libraries_(LibraryOptions(max_per_identity)) {}

absl::StatusOr<LibraryTable::Reservation> LibraryTable::Reserve(
    const Identity& owner) {
  PurgeExited();
  // Handles outlive the connection that made them: the library stays
  // loaded either way.
  return libraries_.Reserve({.identity = owner, .persistent = true});
}

std::string LibraryTable::Insert(Reservation reservation, LoadedLibrary library) {
  std::string id = reservation.id();
  // Persistent, so never CANCELLED.
  std::move(reservation)
      .Commit(std::make_shared<LoadedLibrary>(std::move(library)))
      .IgnoreError();
  return id;
}

absl::StatusOr<std::shared_ptr<LoadedLibrary>> LibraryTable::Take(
    const std::string& id, const Identity& caller) {
  PurgeExited();
  return libraries_.Remove(caller, id);
}

void LibraryTable::Restore(const std::string& id,
                           std::shared_ptr<LoadedLibrary> library) {
  libraries_
      .ReserveBeyondLimit({.identity = library->owner, .persistent = true}, id)
      .Commit(std::move(library))
      .IgnoreError();
}

size_t LibraryTable::CountFor(const Identity& owner) const {
  return libraries_.CountFor(owner);
}

void LibraryTable::PurgeExited() {
  libraries_.RemoveWhere(
      [](const LoadedLibrary& library) { return Exited(library.pidfd); });
}

}  // namespace procwarp::exec
