#!/bin/sh
# Regenerates the CPython layout table from every interpreter's headers found
# on this machine (tools/python_layouts/generate.py --check) and fails when
# the checked-in daemon/python/layout_table.inc differs. Without headers (no
# pyenv, no python3-dev) there is nothing to compare: it says so and passes.
set -eu
cd "${TEST_SRCDIR}/${TEST_WORKSPACE}"
# Debian's interpreter: it has pyelftools (python3-pyelftools).
exec /usr/bin/python3 tools/python_layouts/generate.py --check
