#!/bin/bash
# test.sh -- the project's whole test run (what CI runs through .ci/run).
#
#   scripts/test.sh
#
# 1. installs the test dependencies (scripts/install-test-deps.sh: SIPp, Kamailio, tcpdump, the
#    Asterisk 22 chroot; as root only -- without root the tests that need them print SKIP lines),
# 2. builds every binary in release mode,
# 3. runs every test of the workspace in release mode against target/release/tandem
#    (the tandem-tests crate: tests/tests/*.rs through Tandem, and the harness's own checks through
#    Kamailio), then
# 4. checks formatting and clippy (-D warnings).
# Logs of a failed scenario test stay under target/tandem-tests/ (the failure message names the folder).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "test dependencies"
if ! scripts/install-test-deps.sh; then
  if [ "${CI:-}" = true ]; then
    echo "ERROR: scripts/install-test-deps.sh failed; CI needs every test peer" >&2
    exit 1
  fi
  echo "WARNING: scripts/install-test-deps.sh failed; tests whose tools are missing will SKIP" >&2
fi

step "build (release)"
cargo build --release --workspace --bins

step "tests (release, TANDEM_BIN=target/release/tandem)"
TANDEM_BIN="$PWD/target/release/tandem" cargo test --workspace --release

step "relay tests on the epoll data plane (the run above used the default, io_uring)"
TANDEM_RELAY_IO=epoll cargo test --release -p tandem-relay

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "all checks passed"
