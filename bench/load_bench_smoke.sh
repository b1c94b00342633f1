#!/bin/sh
# The load program with tiny counts (a few seconds): it runs, every call
# succeeds and every phase gives its fds back (load_bench exits 1 if not).
exec "$(dirname "$0")/load_bench" --quick --clients 8 --calls 20 --children 40 \
    --spawns 50 --max_seconds 60 2>/dev/null
