#!/bin/bash
# Runs the Python client's pytest suite (client/python/tests) against a real
# procwarpd from this test's runfiles, with Debian's /usr/bin/python3 (which
# has python3-grpcio and python3-pytest). Each pytest case is a test case of
# Bazel's test.xml (--junitxml), so tools/test.sh counts them one by one.
set -eu

# Bazel runs sh_tests in the workspace directory of the runfiles tree.
export PROCWARP_TEST_DAEMON="${PWD}/daemon/procwarpd"
export PROCWARP_TEST_AGENT="${PWD}/agent/procwarp-agent"
export PROCWARP_TEST_TLS_SCRIPT="${PWD}/deploy/tls/procwarp-tls.sh"
export PYTHONPATH="${PWD}/client/python"
# Bytecode caches would be written into the runfiles tree.
export PYTHONDONTWRITEBYTECODE=1

exec /usr/bin/python3 -m pytest -p no:cacheprovider -v \
  ${XML_OUTPUT_FILE:+--junitxml="${XML_OUTPUT_FILE}"} \
  "${PWD}/client/python/tests" "$@"
