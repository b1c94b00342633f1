#!/usr/bin/env bash
# verify_units_test.sh: static checks of procwarp's systemd integration in
# deploy/, without a running systemd:
#  - deploy/install.sh installs the expected layout into a temporary root;
#  - `systemd-analyze verify` accepts procwarpd.service and procwarpd.socket;
#  - systemd-tmpfiles and systemd-sysusers accept their drop-in files;
#  - the example configuration parses as procwarp.config.v1.DaemonConfig.
# systemd-analyze only warns (exit 0) about unknown keys, typos in section
# names and the like, so ANY output from these tools is a failure.
#
# Usage (Bazel passes these): verify_units_test.sh PROCWARPD PROCWARP
# verify checks that ExecStart= names an executable where it runs, so the
# installed unit is verified from a copy whose ExecStart= points at the
# procwarpd installed into the temporary root.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C SYSTEMD_LOG_COLOR=0

fail() { echo "FAIL: $*" >&2; exit 1; }
(($# == 2)) || fail "usage: $0 PROCWARPD PROCWARP"
procwarpd=$(readlink -f "$1") procwarp=$(readlink -f "$2")
for tool in systemd-analyze systemd-tmpfiles systemd-sysusers; do
  command -v "$tool" >/dev/null || fail "$tool not found (install Debian package systemd)"
done

# In Bazel the runfiles tree holds deploy/ beside tests/; outside, the repository does.
if [[ -f deploy/install.sh ]]; then deploy=$PWD/deploy
else deploy=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy" && pwd); fi

tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/verify_units.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
root=$tmp/root

# Runs a checker; its output (stdout and stderr) must be empty, apart from
# lines matching the extended regex ALLOWED (progress notes such as
# systemd-sysusers' "Creating group ..."; '^$' allows nothing).
check_silent() {  # check_silent WHAT ALLOWED CMD...
  local what=$1 allowed=$2 out rc=0; shift 2
  out=$("$@" 2>&1) || rc=$?
  if ((rc != 0)) || grep -qvE "$allowed" <<<"$out"; then
    printf '%s\n' "$out" >&2
    fail "$what: exit $rc, output above (any output counts as failure)"
  fi
  echo "ok: $what"
}

# 1. install.sh into a temporary root: the layout the units rely on.
bash "$deploy/install.sh" --root "$root" --procwarpd "$procwarpd" --procwarp "$procwarp" \
  >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "install.sh failed"; }
for f in usr/local/bin/procwarpd usr/local/bin/procwarp; do
  [[ -x $root/$f ]] || fail "install.sh did not install executable /$f"
done
for f in usr/local/lib/systemd/system/procwarpd.service usr/local/lib/systemd/system/procwarpd.socket \
         usr/local/lib/tmpfiles.d/procwarp.conf usr/local/lib/sysusers.d/procwarp.conf \
         etc/procwarp/procwarpd.conf.example; do
  [[ -f $root/$f ]] || fail "install.sh did not install /$f"
done
grep -qx 'ExecStart=/usr/local/bin/procwarpd --keeper systemd' "$root/usr/local/lib/systemd/system/procwarpd.service" ||
  fail "procwarpd.service: expected ExecStart=/usr/local/bin/procwarpd --keeper systemd"
# A second run must succeed too and must keep the administrator's /etc file.
echo '# edited by the admin' >>"$root/etc/procwarp/procwarpd.conf.example"
bash "$deploy/install.sh" --root "$root" --procwarpd "$procwarpd" --procwarp "$procwarp" \
  >"$tmp/install2.log" 2>&1 || { cat "$tmp/install2.log" >&2; fail "second install.sh run failed"; }
grep -q 'edited by the admin' "$root/etc/procwarp/procwarpd.conf.example" ||
  fail "install.sh overwrote /etc/procwarp/procwarpd.conf.example"
echo "ok: install.sh layout"

# 2. systemd-analyze verify on copies whose ExecStart= is the installed binary.
# Same file names: the socket unit activates the service of its own name.
units=$tmp/units
mkdir "$units"
sed "s|^ExecStart=/usr/local/bin/procwarpd|ExecStart=$root/usr/local/bin/procwarpd|" \
  "$root/usr/local/lib/systemd/system/procwarpd.service" >"$units/procwarpd.service"
cp "$root/usr/local/lib/systemd/system/procwarpd.socket" "$units/"
# verify may write nothing but reads the cwd's units as well: run it elsewhere.
(cd "$tmp" && check_silent "systemd-analyze verify procwarpd.service procwarpd.socket" '^$' \
  systemd-analyze verify "$units/procwarpd.service" "$units/procwarpd.socket")

# 3. tmpfiles.d and sysusers.d syntax, applied to the temporary root only.
check_silent "systemd-sysusers procwarp.conf" "^(\$|Creating group '[a-z-]+' with GID [0-9]+\.\$)" \
  systemd-sysusers --root="$root" "$root/usr/local/lib/sysusers.d/procwarp.conf"
for g in procwarp procwarp-admin; do
  grep -q "^$g:" "$root/etc/group" || fail "systemd-sysusers did not create group $g"
done
check_silent "systemd-tmpfiles procwarp.conf" '^$' \
  systemd-tmpfiles --root="$root" --create "$root/usr/local/lib/tmpfiles.d/procwarp.conf"
[[ $(stat -c '%a %U %G' "$root/run/procwarp") == "755 root root" ]] ||
  fail "systemd-tmpfiles: /run/procwarp is $(stat -c '%a %U %G' "$root/run/procwarp"), want 755 root root"

# 4. The example configuration parses as the daemon's config message.
proto=$(dirname "$deploy")/proto/procwarp/config/v1/config.proto
command -v protoc >/dev/null || fail "protoc not found (install Debian package protobuf-compiler)"
[[ -f $proto ]] || fail "missing $proto"
protoc --encode=procwarp.config.v1.DaemonConfig -I"$(dirname "$deploy")" "$proto" \
  <"$root/etc/procwarp/procwarpd.conf.example" >"$tmp/config.bin" 2>"$tmp/protoc.err" ||
  { cat "$tmp/protoc.err" >&2; fail "procwarpd.conf.example is not a valid text-format DaemonConfig"; }
[[ ! -s $tmp/protoc.err ]] || { cat "$tmp/protoc.err" >&2; fail "protoc warned about procwarpd.conf.example"; }
echo "ok: procwarpd.conf.example parses as procwarp.config.v1.DaemonConfig"

echo "verify_units_test: all checks passed"
