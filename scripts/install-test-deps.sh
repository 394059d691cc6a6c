#!/bin/bash
# install-test-deps.sh -- install what Tandem's real-peer tests need (idempotent).
#
# As root: installs the Debian packages (sipp, kamailio, debootstrap, tcpdump, tshark, zstd, iproute2; for the
# network-namespace tests keepalived, iputils-arping, iputils-ping, iptables) and
# builds or reuses the Asterisk 22 chroot (Debian sid) used by tests/tests/asterisk.rs.
# Not root: prints what is missing and exits 0, so that test runs without root skip those tests cleanly.
#
# Environment:
#   TANDEM_LAB_CACHE   cache folder (default /var/cache/tandem-lab): asterisk-root/ (the chroot) and
#                      debcache/ (the .debs, so a rebuild does not download them again)
#   DEBIAN_MIRROR      mirror for debootstrap (default http://deb.debian.org/debian)
#   SKIP_ASTERISK=1    do not build the Asterisk chroot
set -euo pipefail

CACHE=${TANDEM_LAB_CACHE:-/var/cache/tandem-lab}
ROOTFS=$CACHE/asterisk-root
DEBCACHE=$CACHE/debcache
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# command -> Debian package providing it
declare -A PKG_OF=(
  [sipp]=sip-tester
  [kamailio]=kamailio
  [debootstrap]=debootstrap
  [tcpdump]=tcpdump
  [tshark]=tshark
  [zstd]=zstd
  [ip]=iproute2
  [tc]=iproute2
  [ss]=iproute2
  [keepalived]=keepalived
  [arping]=iputils-arping
  [ping]=iputils-ping
  [iptables]=iptables
)

missing_pkgs() {
  local cmd
  for cmd in "${!PKG_OF[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || echo "${PKG_OF[$cmd]}"
  done | sort -u
}

asterisk_ok() { [ -x "$ROOTFS/usr/sbin/asterisk" ] && chroot "$ROOTFS" /usr/sbin/asterisk -V >/dev/null 2>&1; }

mapfile -t MISSING < <(missing_pkgs)

if [ "$(id -u)" -ne 0 ]; then
  if [ ${#MISSING[@]} -gt 0 ]; then
    echo "install-test-deps: not root; missing packages: ${MISSING[*]} (tests needing them will SKIP)"
  fi
  if [ ! -x "$ROOTFS/usr/sbin/asterisk" ]; then
    echo "install-test-deps: not root; no Asterisk chroot at $ROOTFS (Asterisk tests will SKIP)"
  fi
  exit 0
fi

if [ ${#MISSING[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${MISSING[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer "no" without a prompt
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
fi

if [ "${SKIP_ASTERISK:-0}" = 1 ]; then
  echo "install-test-deps: SKIP_ASTERISK=1, not building the Asterisk chroot"
elif asterisk_ok; then
  echo "install-test-deps: Asterisk chroot present: $(chroot "$ROOTFS" /usr/sbin/asterisk -V)"
else
  echo "install-test-deps: building the Asterisk chroot in $ROOTFS (about a minute)"
  mkdir -p "$DEBCACHE"
  tmp=$ROOTFS.tmp.$$
  rm -rf "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  debootstrap --variant=minbase --include=asterisk,asterisk-modules --cache-dir="$DEBCACHE" \
    sid "$tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
    echo "install-test-deps: debootstrap failed, see $CACHE/debootstrap.log" >&2
    exit 1
  }
  # keep the .debs for the next rebuild, not inside the tree
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  rm -rf "$ROOTFS"
  mv "$tmp" "$ROOTFS"
  trap - EXIT
  asterisk_ok || { echo "install-test-deps: asterisk -V fails in $ROOTFS" >&2; exit 1; }
  echo "install-test-deps: built $(chroot "$ROOTFS" /usr/sbin/asterisk -V)"
fi
