#!/bin/sh
# keepalived-notify.sh: Tandem follows the service address (VIP) that keepalived moves.
# Install it root-owned and not writable by others (keepalived's enable_script_security), e.g.
#   install -o root -g root -m 0755 scripts/keepalived-notify.sh /usr/local/lib/tandem/
# and set `[ha.vip] owner = "keepalived"` in Tandem's config (docs/keepalived.md).
#
# As keepalived's notify script, which appends TYPE NAME STATE PRIORITY:
#   notify "/usr/local/lib/tandem/keepalived-notify.sh --addr 127.0.0.1:9091"
#     MASTER                       -> tandemctl promote --force   (the address is here now)
#     BACKUP, FAULT, STOP, DELETED -> tandemctl demote            (it is elsewhere or gone)
#   Promotion is forced: keepalived has already moved the address here, so the old active
#   receives nothing any more. Refusing because the mirror is not synced would leave the
#   address on a node that drops every packet; forced, the node carries every call its mirror
#   holds (with `ha.durability = "sync"` that is every answered call) and fences the old active
#   with a higher epoch.
#
# As a vrrp_script health check (in keepalived.conf: interval 1, fall 1, rise 1):
#   script "/usr/local/lib/tandem/keepalived-notify.sh --addr 127.0.0.1:9091 check"
#   Fails when Tandem does not answer (killed, hung), or when keepalived made this node MASTER
#   and Tandem is not active (its promotion failed, or it restarted empty): keepalived then
#   takes the address away (FAULT) and the peer, if healthy, gets it and is promoted.
#
# Options (before the keepalived arguments or `check`):
#   --addr HOST:PORT   Tandem's admin gRPC address (default: $TANDEM_ADMIN, else 127.0.0.1:9091)
#   --tandemctl PATH   the tandemctl binary (default: tandemctl on PATH)
#   --timeout SECONDS  bound on each tandemctl call (default 2; it is killed 1 s later)
#   --state-dir DIR    the last VRRP state and the lock (default /run/tandem-keepalived)
#   --log FILE         also append each line logged to FILE
# Each action is logged to syslog (tag tandem-keepalived, facility daemon) and stderr.
#
# Exit codes: 0 Tandem follows the address (or the check passed), 1 Tandem refused or the check
# failed, 2 Tandem could not be reached, 64 usage error. Running it again for the same state
# changes nothing (promote of an active node and demote of a standby are no-ops).

set -u

# keepalived starts one process per notify and they may run out of order (BACKUP then MASTER a
# moment apart): each notify notes when it started (centiseconds since boot, immune to clock
# steps; with the boot id, as the state folder may outlive a reboot), and one that gets the lock
# after a later one has acted does nothing.
boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
read -r uptime _ </proc/uptime
started="${uptime%.*}${uptime#*.}"

addr="${TANDEM_ADMIN:-127.0.0.1:9091}"
tandemctl="tandemctl"
timeout_s=2
state_dir="/run/tandem-keepalived"
log_file=""

usage() {
    echo "usage: $0 [--addr HOST:PORT] [--tandemctl PATH] [--timeout SECONDS] [--state-dir DIR] [--log FILE] (TYPE NAME STATE [PRIORITY] | check)" >&2
    exit 64
}

log() {
    logger -t tandem-keepalived -p daemon.notice -- "$*" 2>/dev/null
    echo "tandem-keepalived: $*" >&2
    if [ -n "$log_file" ]; then
        echo "$(date '+%Y-%m-%dT%H:%M:%S.%N') $*" >>"$log_file" 2>/dev/null
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
    --addr) [ $# -ge 2 ] || usage; addr="$2"; shift 2 ;;
    --tandemctl) [ $# -ge 2 ] || usage; tandemctl="$2"; shift 2 ;;
    --timeout) [ $# -ge 2 ] || usage; timeout_s="$2"; shift 2 ;;
    --state-dir) [ $# -ge 2 ] || usage; state_dir="$2"; shift 2 ;;
    --log) [ $# -ge 2 ] || usage; log_file="$2"; shift 2 ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
    esac
done
case "$timeout_s" in
'' | *[!0-9.]* | *.*.*) usage ;;
esac

# tandemctl with its own bound and, should it hang anyway, `timeout` one second later.
ctl() {
    guard=$(awk -v t="$timeout_s" 'BEGIN { printf "%.3f", t + 1 }')
    timeout -k 1 "$guard" "$tandemctl" --addr "$addr" --timeout "${timeout_s}s" "$@"
}

# One notify or check at a time: keepalived runs each notify in a process of its own, and a
# check must not judge the role while a notify is changing it.
mkdir -p "$state_dir" || exit 2
exec 9>>"$state_dir/lock"

if [ "${1:-}" = "check" ]; then
    [ $# -eq 1 ] || usage
    # a notify is under way: judge at the next run
    flock -w 1 9 || exit 0
    state=$(cat "$state_dir/state" 2>/dev/null)
    previous=$(cat "$state_dir/check" 2>/dev/null)
    answer=$(ctl --json status 2>&1)
    rc=$?
    role=$(printf '%s' "$answer" | sed -n 's/.*"role":"\([a-z]*\)".*/\1/p')
    if [ $rc -ne 0 ]; then
        verdict="failed: Tandem at $addr does not answer (tandemctl exit $rc): ${answer:-no output}"
        code=1
    elif [ "$state" = "MASTER" ] && [ "$role" != "active" ]; then
        verdict="failed: keepalived made this node MASTER but Tandem is ${role:-unknown}"
        code=1
    else
        verdict="passed: Tandem is ${role:-unknown} (keepalived ${state:-no state yet})"
        code=0
    fi
    # log changes only, not one line a second
    if [ "$verdict" != "$previous" ]; then
        log "check $verdict"
        printf '%s' "$verdict" >"$state_dir/check"
    fi
    exit $code
fi

[ $# -ge 3 ] && [ $# -le 4 ] || usage
type="$1"
name="$2"
state="$3"
flock -w 10 9 || log "waited 10 s for the lock; going on"
latest_boot="" latest=""
read -r latest_boot latest 2>/dev/null <"$state_dir/started"
if [ "$latest_boot" = "$boot" ] && [ -n "$latest" ] && [ "$started" -lt "$latest" ]; then
    log "$type $name $state: a later notify ($(cat "$state_dir/state" 2>/dev/null)) has acted; nothing done"
    exit 0
fi
printf '%s %s\n' "$boot" "$started" >"$state_dir/started"
printf '%s\n' "$state" >"$state_dir/state.tmp" && mv "$state_dir/state.tmp" "$state_dir/state"

case "$state" in
MASTER)
    answer=$(ctl promote --force --reason "keepalived: MASTER of $type $name" 2>&1)
    rc=$?
    action="promote --force"
    ;;
BACKUP | FAULT | STOP | DELETED)
    answer=$(ctl demote --reason "keepalived: $state of $type $name" 2>&1)
    rc=$?
    action="demote"
    ;;
*)
    log "$type $name: unknown state ${state}; nothing done"
    exit 64
    ;;
esac
answer=$(printf '%s' "$answer" | tr '\n' ' ')
case $rc in
0) log "$type $name $state: $action done: $answer"; exit 0 ;;
1) log "$type $name $state: $action refused by Tandem: $answer"; exit 1 ;;
*) log "$type $name $state: $action: Tandem at $addr not reached (exit $rc): $answer"; exit 2 ;;
esac
