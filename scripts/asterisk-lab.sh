#!/bin/bash
# asterisk-lab.sh -- run real Asterisk 22 (Debian sid, chroot built by install-test-deps.sh) for Tandem's tests.
#
# Usage: asterisk-lab.sh render N | start N | ready N [SECONDS] | stop N | kill9 N | pid N | cli N 'command'
#   N=1 -> SIP 127.0.0.1:5080 (udp+tcp), RTP 20000-20999
#   N=2 -> SIP 127.0.0.2:5080 (udp+tcp), RTP 21000-21999
# Both accept calls from the proxy at 127.0.0.1 (any port): ext 100 = Answer+Echo, ext 200 = Dial(agent1).
#
# Environment:
#   TANDEM_LAB_CACHE  cache folder holding asterisk-root/ (default /var/cache/tandem-lab)
#   ASTERISK_ROOT     the chroot (default $TANDEM_LAB_CACHE/asterisk-root)
#   ASTERISK_LAB_RUN  rendered configs, pid files and console logs (default /tmp/tandem-asterisk-lab)
#   AGENT_PORT        UDP port of the agent1 SIPp UAS on 127.0.0.1 (default 5090), used by render/start
#
# Only pids this script recorded are ever signalled. Needs root (chroot).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TPL=$HERE/../tests/asterisk
CACHE=${TANDEM_LAB_CACHE:-/var/cache/tandem-lab}
ROOT=${ASTERISK_ROOT:-$CACHE/asterisk-root}
RUN=${ASTERISK_LAB_RUN:-/tmp/tandem-asterisk-lab}
SIPPORT=5080
PROXYIP=127.0.0.1
AGENTIP=127.0.0.1
AGENT_PORT=${AGENT_PORT:-5090}

usage() { sed -n '2,16p' "$0"; exit 2; }

inst_vars() {
  N=${1:-}
  case $N in
    1) BINDIP=127.0.0.1; RTPSTART=20000; RTPEND=20999 ;;
    2) BINDIP=127.0.0.2; RTPSTART=21000; RTPEND=21999 ;;
    *) echo "asterisk-lab: unknown instance '$N' (1 or 2)" >&2; exit 2 ;;
  esac
  CONF=/etc/asterisk-$N/asterisk.conf # path inside the chroot
  PIDFILE=$RUN/inst$N.pid
  LOG=$RUN/asterisk-$N.out
}

render() {
  inst_vars "$1"
  local out=$RUN/inst$N/etc f
  rm -rf "$out"
  mkdir -p "$out"
  for f in "$TPL"/*.conf; do
    sed -e "s/@INST@/$N/g" -e "s/@BINDIP@/$BINDIP/g" -e "s/@SIPPORT@/$SIPPORT/g" \
      -e "s/@PROXYIP@/$PROXYIP/g" -e "s/@AGENTIP@/$AGENTIP/g" -e "s/@AGENTPORT@/$AGENT_PORT/g" \
      -e "s/@RTPSTART@/$RTPSTART/g" -e "s/@RTPEND@/$RTPEND/g" "$f" >"$out/$(basename "$f")"
  done
  # copied, not bind-mounted: a crashed run leaves no mount behind
  rm -rf "$ROOT/etc/asterisk-$N"
  cp -a "$out" "$ROOT/etc/asterisk-$N"
  for f in run var/log var/spool var/lib var/cache; do mkdir -p "$ROOT/$f/asterisk-$N"; done
}

# A process that exists and is not a zombie: after kill -9 it stays a zombie until it is reaped
# (kill -0 still succeeds). A just-launched instance is checked this way while its exec chain
# (setsid, chroot) has not reached asterisk yet, which takes a moment on a busy machine.
alive() {
  local p=${1:-} st
  [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 1
  st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ]
}
# A pid counts as running only if it is alive and still asterisk (pids get reused).
running() {
  alive "${1:-}" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = asterisk ]
}
recorded_pid() { cat "$PIDFILE" 2>/dev/null || true; }

start() {
  inst_vars "$1"
  [ -x "$ROOT/usr/sbin/asterisk" ] || {
    echo "asterisk-lab: no chroot at $ROOT (run scripts/install-test-deps.sh as root)" >&2
    exit 1
  }
  if running "$(recorded_pid)"; then
    echo "asterisk-lab: instance $N already running (pid $(recorded_pid))" >&2
    exit 1
  fi
  render "$N"
  # stale files from a kill -9 are harmless, but the wait for the control socket below needs them gone
  rm -f "$ROOT/run/asterisk-$N/asterisk.pid" "$ROOT/run/asterisk-$N/asterisk.ctl"
  # -f: stay in the foreground (so $! is asterisk itself); no -c: a console without a tty spins at
  # 100 % CPU. -n: no colours in the log.
  setsid chroot "$ROOT" /usr/sbin/asterisk -f -n -C "$CONF" </dev/null >"$LOG" 2>&1 &
  local p=$! i
  echo "$p" >"$PIDFILE"
  for i in $(seq 150); do
    [ -S "$ROOT/run/asterisk-$N/asterisk.ctl" ] && break
    alive "$p" || {
      echo "asterisk-lab: instance $N died at start; its log ($LOG) ends:" >&2
      tail -n 15 "$LOG" >&2
      exit 1
    }
    sleep 0.1
  done
  # Asterisk's own pid file is authoritative (setsid forks when called by a process-group leader)
  local ap
  ap=$(cat "$ROOT/run/asterisk-$N/asterisk.pid" 2>/dev/null || true)
  if [ -n "$ap" ] && [ "$ap" != "$p" ]; then
    p=$ap
    echo "$p" >"$PIDFILE"
  fi
  echo "$p"
}

cli() {
  inst_vars "$1"
  shift
  chroot "$ROOT" /usr/sbin/asterisk -C "$CONF" -rx "$*"
}

# Ready = fully booted AND chan_pjsip running. Polls: a single -rx right after start can come back empty.
ready() {
  inst_vars "$1"
  local deadline=$(($(date +%s) + ${2:-15})) out=""
  while :; do
    running "$(recorded_pid)" || { echo "asterisk-lab: instance $N is not running, see $LOG" >&2; return 1; }
    if cli "$N" 'core waitfullybooted' >/dev/null 2>&1; then
      out=$(cli "$N" 'module show like chan_pjsip.so' 2>&1 || true)
      if grep -q Running <<<"$out"; then
        echo "instance $N ready"
        return 0
      fi
    fi
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 0.2
  done
  echo "asterisk-lab: instance $N NOT ready (last: ${out:-none}; see $LOG)" >&2
  return 1
}

stop() {
  inst_vars "$1"
  local p i
  p=$(recorded_pid)
  if ! running "$p"; then
    echo "instance $N not running"
    return 0
  fi
  cli "$N" "core stop now" >/dev/null 2>&1 || kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 50); do
    running "$p" || { echo "stopped $p"; return 0; }
    sleep 0.1
  done
  kill -9 "$p" 2>/dev/null || true
  echo "killed -9 $p"
}

kill9() {
  inst_vars "$1"
  local p i
  p=$(recorded_pid)
  running "$p" || { echo "asterisk-lab: instance $N not running" >&2; return 1; }
  kill -9 "$p"
  echo "kill -9 $p"
  for i in $(seq 100); do
    running "$p" || return 0
    sleep 0.02
  done
}

mkdir -p "$RUN"
cmd=${1:-}
shift || true
case $cmd in
  render | start | ready | stop | kill9 | cli) "$cmd" "$@" ;;
  pid) inst_vars "${1:-}"; recorded_pid ;;
  *) usage ;;
esac
