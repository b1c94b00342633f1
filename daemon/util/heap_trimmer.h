// HeapTrimmer: gives the heap freed after a load back to the kernel
// (docs/architecture.md, "Memory after load").
//
// glibc keeps freed memory in its arenas (one per thread that allocated, up
// to 8 per CPU) and returns only the top of each heap on its own. After a
// load with a thousand connections and handler threads, that is tens of
// MiB of free memory the daemon's RSS keeps showing, though nothing uses it
// (load_bench --repeat shows it: a second run grows nothing). malloc_trim(0)
// hands every free page of every arena back (MADV_DONTNEED); it walks the
// whole heap, so it runs only after a big drop in what the daemon holds,
// not on every release.
#ifndef PROCWARP_DAEMON_UTIL_HEAP_TRIMMER_H_
#define PROCWARP_DAEMON_UTIL_HEAP_TRIMMER_H_

#include <cstddef>
#include <functional>

namespace procwarp {

class HeapTrimmer {
 public:
  // Trims once what the daemon holds has fallen to half its peak since the
  // last trim and by at least `min_drop` items. `trim` does the trimming
  // (malloc_trim(0) by default; tests count calls instead).
  explicit HeapTrimmer(size_t min_drop, std::function<void()> trim = nullptr);

  // `live`: what the daemon holds now (connections + processes + threads),
  // sampled now and then by one thread. True when it trimmed.
  bool Note(size_t live);

 private:
  const size_t min_drop_;
  const std::function<void()> trim_;
  size_t peak_ = 0;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_UTIL_HEAP_TRIMMER_H_
