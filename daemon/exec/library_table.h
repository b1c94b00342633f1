// LibraryTable: the handles Exec.InjectLibrary hands out, so that
// Exec.UnloadLibrary can dlclose() exactly what was loaded.
//
// A handle names {owner, target pidfd, dlopen() handle, the library file's
// device and inode}, kept in a HandleTable (daemon/handles/handle_table.h).
// Handles are owned by the identity that injected (others
// get NOT_FOUND, as for an unknown id; admins see all). They outlive the
// connection that made them — the library stays loaded in the target either
// way, and `procwarp inject` / `procwarp uninject` are separate commands —
// and are dropped when the target exits (seen through the pidfd, checked
// whenever the table is used) or on unload. Each identity may hold at most
// `max_per_identity` of them, reserved before the injection starts (each
// holds a pidfd in the daemon).
#ifndef PROCWARP_DAEMON_EXEC_LIBRARY_TABLE_H_
#define PROCWARP_DAEMON_EXEC_LIBRARY_TABLE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/handles/handle_table.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::exec {

struct LoadedLibrary {
  Identity owner;
  pid_t pid = 0;
  UniqueFd pidfd;
  uint64_t dl_handle = 0;  // what dlopen() returned in the target
  std::string path;        // as the target's maps show it
  // The caller's attached thread it was loaded through (empty: by pid);
  // UnloadLibrary goes through it while it is still attached.
  std::string thread_id;
  std::string device;      // "fd:01", as in /proc/PID/maps
  uint64_t inode = 0;
};

class LibraryTable {
 public:
  // A slot for one handle of `owner`, held while an injection runs. Insert
  // consumes it; destroying it unused gives it back (handle_table.h).
  using Reservation = HandleTable<LoadedLibrary>::Reservation;

  explicit LibraryTable(size_t max_per_identity);

  // RESOURCE_EXHAUSTED when `owner` already holds its share.
  absl::StatusOr<Reservation> Reserve(const Identity& owner);

  // Records `library` under the reservation's unguessable id and returns
  // the id.
  std::string Insert(Reservation reservation, LoadedLibrary library);

  // Takes the handle `id` out of the table for `caller` (NOT_FOUND for
  // others' handles and unknown ids). Put it back with Restore when the
  // unload did not happen.
  absl::StatusOr<std::shared_ptr<LoadedLibrary>> Take(const std::string& id,
                                                      const Identity& caller);
  void Restore(const std::string& id, std::shared_ptr<LoadedLibrary> library);

  size_t CountFor(const Identity& owner) const;

 private:
  // Drops the handles whose target has exited.
  void PurgeExited();

  HandleTable<LoadedLibrary> libraries_;
};

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_LIBRARY_TABLE_H_
