// See heap_trimmer.h.
#include "daemon/util/heap_trimmer.h"

#include <malloc.h>

#include <utility>

namespace procwarp {

HeapTrimmer::HeapTrimmer(size_t min_drop, std::function<void()> trim)
    : min_drop_(min_drop),
      trim_(trim ? std::move(trim) : [] { malloc_trim(0); }) {}

bool HeapTrimmer::Note(size_t live) {
  if (live > peak_) peak_ = live;
  const size_t drop = peak_ - live;
  if (drop < min_drop_ || live > peak_ / 2) return false;
  trim_();
  peak_ = live;  // the next trim needs a new peak and a new drop
  return true;
}

}  // namespace procwarp
