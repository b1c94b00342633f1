// Paging of list RPCs whose records other identities' data can inflate
// (Processes.List, Threads.ListThreads with `all`): a page holds at most
// page_size records and at most kMaxPageBytes, so no user's records can make
// another's response exceed the message limit (4 MiB, as clients receive by
// default). A record is bounded (record_bounds.h), so a page always holds at
// least one. Pages follow the id order the tables keep; the token is the last
// id of a page.
#ifndef PROCWARP_DAEMON_SERVER_PAGING_H_
#define PROCWARP_DAEMON_SERVER_PAGING_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace procwarp {

inline constexpr uint32_t kDefaultPageSize = 500;
inline constexpr uint32_t kMaxPageSize = 1000;
inline constexpr size_t kMaxPageBytes = 3 << 20;

// Adds to a response the page of `items` (sorted by id) that follows
// `page_token` and returns the next page's token ("" on the last page).
// `id_of(item)` is its id, `info_of(item)` its record (a protobuf message),
// `add(record)` moves a record into the response.
template <typename Item, typename IdOf, typename InfoOf, typename Add>
std::string FillPage(const std::vector<Item>& items,
                     const std::string& page_token, uint32_t page_size,
                     IdOf id_of, InfoOf info_of, Add add) {
  const uint32_t size = page_size == 0 ? kDefaultPageSize
                                       : std::min(page_size, kMaxPageSize);
  auto it = page_token.empty()
                ? items.begin()
                : std::upper_bound(items.begin(), items.end(), page_token,
                                   [&](const std::string& token,
                                       const Item& item) {
                                     return token < id_of(item);
                                   });
  uint32_t taken = 0;
  size_t bytes = 0;
  for (; it != items.end() && taken < size; ++it) {
    auto info = info_of(*it);
    const size_t info_bytes = info.ByteSizeLong();
    if (taken > 0 && bytes + info_bytes > kMaxPageBytes) break;
    bytes += info_bytes;
    ++taken;
    add(std::move(info));
  }
  // Stopping early means the page holds at least one record.
  return it == items.end() ? "" : std::string(id_of(*std::prev(it)));
}

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_PAGING_H_
