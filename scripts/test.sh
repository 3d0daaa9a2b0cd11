#!/usr/bin/env bash
# Run every check ossmount has: formatting, clippy, unit tests, and the integration tests
# that mount for real through FUSE and talk real HTTP to `ossmount serve`, plus the
# cross-checks with the official OSS Python SDK and boto3, then the install test of the
# .deb and .rpm (scripts/package-test.sh).
#
# Installs what the tests need when it is missing (Debian packages, pip packages), so it
# works on a fresh machine. Needs root (or sudo) for apt-get and for FUSE mounts.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

need_apt=()
command -v fusermount3 >/dev/null || need_apt+=(fuse3)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v cmp >/dev/null || need_apt+=(diffutils)
command -v curl >/dev/null || need_apt+=(curl) # tests/link.rs, tests/tls.rs
{ command -v fincore && command -v findmnt; } >/dev/null || need_apt+=(util-linux)
{ command -v getfattr && command -v setfattr; } >/dev/null || need_apt+=(attr)
command -v man >/dev/null || need_apt+=(man-db)          # tests/generate.rs, package test
command -v rpmbuild >/dev/null || need_apt+=(rpm)        # scripts/package.sh builds the .rpm
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c "import alibabacloud_oss_v2, boto3, alibabacloud_credentials, prometheus_client" 2>/dev/null; then
  echo "== installing the OSS Python SDK, boto3, alibabacloud-credentials (interop cross-checks) and prometheus_client (its /metrics parser)"
  python3 -m pip install -q alibabacloud-oss-v2 boto3 alibabacloud-credentials prometheus_client
fi
[ -e /dev/fuse ] || { echo "error: /dev/fuse is missing; FUSE tests cannot run" >&2; exit 1; }

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
# A bound on the whole suite (about 8 minutes here), so that a test that hangs fails the
# run in minutes instead of eating CI's 90: libtest names it ("has been running for over
# 60 seconds") before the kill. OSSMOUNT_TEST_TIMEOUT (seconds) moves the bound.
timeout -k 30 "${OSSMOUNT_TEST_TIMEOUT:-1500}" cargo test --no-fail-fast "$@" || {
  rc=$?
  [ $rc -eq 124 ] && echo "error: cargo test ran over ${OSSMOUNT_TEST_TIMEOUT:-1500} s (a test hangs?)" >&2
  exit $rc
}
# The packages, installed and used (a few minutes: the LTO build). Run on the full suite,
# i.e. without test arguments; OSSMOUNT_PACKAGE_TEST=0 skips it, =1 forces it.
if [ "${OSSMOUNT_PACKAGE_TEST:-$([ $# -eq 0 ] && echo 1 || echo 0)}" = 1 ]; then
  echo "== scripts/package-test.sh"
  $SUDO scripts/package-test.sh
fi
# The soak: 2 minutes of random faults against a mount, every byte checked, then 1 minute
# in which objects are replaced every 50 ms while readers read them whole (the storm that
# found the kernel keeping an old size across a replace). OSSMOUNT_SOAK=0 skips both.
if [ "${OSSMOUNT_SOAK:-1}" = 1 ]; then
  echo "== soak: 2 minutes of random faults against a mount, every byte checked"
  $SUDO scripts/soak.sh 2
  echo "== soak: 1 minute of objects replaced every 50 ms under readers"
  $SUDO env SOAK_FAULTS=replace SOAK_GAP=0.05 scripts/soak.sh 1
fi
