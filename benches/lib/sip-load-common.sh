# sip-load-common.sh -- shell functions shared by the SIPp call-load benchmarks (benches/sip-load.sh,
# benches/ha-cps.sh): CPU and memory of a process group, SIPp's statistics files, starting SIPp's
# media server, Kamailio (benches/kamailio-bench.cfg) and Tandem, and one load step. Sourced, not run.
#
# The sourcing script sets: STEP_SECONDS, BUFF (SIPp -buff_size), the ports UAS_PORT UAS_MEDIA
# PROXY_PORT UAC_PORT UAC_MEDIA UAS_CTL UAC_CTL, and optionally PROXY_HOST (where SIPp's caller sends,
# 127.0.0.1), LOAD_CPUS (taskset CPU list for both SIPp ends; empty: any CPU), PEER_PID (a second
# process group whose CPU a step also counts: a standby) and TANDEM_MEDIA (off: Tandem's config says
# [media] enabled = false, so SDP passes unchanged and no relay port is taken; default on).
# launch_kamailio and launch_tandem run the proxy under `nice -n $LAUNCH_NICE` when it is set.

BENCHES=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCHES/.." && pwd)
SCEN=$ROOT/tests/scenarios
TICKS=$(getconf CLK_TCK)
PROXY_HOST=${PROXY_HOST:-127.0.0.1}

log() { printf '%s\n' "$*"; }
die_proxy() { log "  $1"; return 1; }

# pids of the process group $1 (a proxy and its workers)
group_pids() {
  local pgid=$1 stat pid rest
  for stat in /proc/[0-9]*/stat; do
    read -r rest 2>/dev/null <"$stat" || continue
    pid=${stat#/proc/}
    pid=${pid%/stat}
    rest=${rest##*) }
    # fields after "comm)": state ppid pgrp ...
    set -- $rest
    [ "${3:-}" = "$pgid" ] && echo "$pid"
  done
}
# CPU ticks (utime+stime) of process group $1
group_ticks() {
  local total=0 pid rest
  for pid in $(group_pids "$1"); do
    rest=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
# PSS in KiB of process group $1
group_pss_kib() {
  local total=0 pid kib
  for pid in $(group_pids "$1"); do
    kib=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}
# waits until process group $1 uses less than 2 % of a CPU over 1 s (30 s at most)
wait_group_idle() {
  local deadline=$((SECONDS + 30)) t0 t1
  while [ $SECONDS -lt $deadline ]; do
    t0=$(group_ticks "$1")
    sleep 1
    t1=$(group_ticks "$1")
    [ $(((t1 - t0) * 50)) -le "$TICKS" ] && return 0
  done
  return 1
}
# "MICROSECONDS_NOW MICROSECONDS_STALLED": the clock and the time some runnable task waited for a
# CPU (PSI, /proc/pressure/cpu "some"; "- -" without PSI). Per-CPU busy time from /proc/stat is not
# used: on this project's VM it misses most of the CPU time the processes themselves account.
cpu_pressure() {
  local now stalled
  now=$(date +%s%6N)
  stalled=$(awk -F'total=' '/^some / { print $2 }' /proc/pressure/cpu 2>/dev/null)
  echo "$now ${stalled:--}"
}
# % of the time between two cpu_pressure outputs $1 and $2 during which some task waited for a CPU
cpu_stalled_percent() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
    if (x[2] == "-" || y[2] == "-" || y[1] <= x[1]) print "-"; else printf "%.0f", 100 * (y[2] - x[2]) / (y[1] - x[1]) }'
}
# field $2 of SIPp's -trace_stat file $1 (last line)
stat_field() {
  awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
    NF > 1 { v = $col } END { print (v == "" ? 0 : v) + 0 }' "$1" 2>/dev/null || echo 0
}
# mean of the response times (ms) in SIPp's -trace_rtt file $1
rtt_mean() {
  awk -F';' 'NR > 1 && $2 != "" { n++; sum += $2 } END { if (n == 0) print "n/a"; else printf "%.3f", sum / n }' "$1" 2>/dev/null
}
# percentile $2 (0-100) of the response times (ms) in SIPp's -trace_rtt file $1
rtt_percentile() {
  awk -F';' 'NR > 1 && $2 != "" { print $2 }' "$1" 2>/dev/null | sort -n |
    awk -v p="$2" '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } i = int((NR * p + 99) / 100); if (i < 1) i = 1; print v[i] }'
}

# OPTIONS to $1 with SIPp until a 200 comes back (10 s at most)
wait_sip_ready() {
  local deadline=$((SECONDS + 10))
  while [ $SECONDS -lt $deadline ]; do
    if sipp "$1" -sf "$SCEN/uac_options.xml" -i 127.0.0.1 -p "$UAC_PORT" -cp "$UAC_CTL" -m 1 -nostdin \
      -timeout 1s -timeout_error >/dev/null 2>&1; then
      return 0
    fi
  done
  return 1
}

stop_pid() { # stop process $1 (and its group): TERM, then KILL after 5 s
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

start_uas() { # $1 = folder; sets UAS_PID
  (cd "$1" && exec ${LOAD_CPUS:+taskset -c "$LOAD_CPUS"} sipp -sf "$SCEN/uas_load.xml" -i 127.0.0.1 -p "$UAS_PORT" \
    -mi 127.0.0.1 -mp "$UAS_MEDIA" -cp "$UAS_CTL" -t u1 -buff_size "$BUFF" -nostdin -timeout 900s \
    -trace_stat -stf uas.csv -fd 5 >uas.out 2>&1) &
  UAS_PID=$!
}

# Kamailio with benches/kamailio-bench.cfg in its own process group: $1 folder (pid file, run dir,
# kamailio.log), $2 CPUs (taskset list, empty: any), then its options (-l SOCKET, -A DEFINE...).
# Sets LAUNCHED_PID.
launch_kamailio() {
  local dir=$1 cpus=$2
  shift 2
  setsid ${cpus:+taskset -c "$cpus"} ${LAUNCH_NICE:+nice -n "$LAUNCH_NICE"} kamailio -DD -E -f "$BENCHES/kamailio-bench.cfg" -x tlsf -X tlsf \
    -m 2048 -M 64 -P "$dir/kamailio.pid" -Y "$dir" "$@" >"$dir/kamailio.log" 2>&1 &
  LAUNCHED_PID=$!
}

# Writes $1/tandem.toml for a Tandem answering SIP on $2 (ip:port; the media relay on its IP),
# admin HTTP on $3 and admin gRPC on $4, with SIPp's media server as its only [[media_server]].
write_tandem_config() {
  local dir=$1 sip=$2 admin=$3 grpc=$4 gen=""
  for gen in "$(dirname "${TANDEM_BIN:-$ROOT/target/release/tandem}")/tandem-config" \
    "$ROOT/target/release/tandem-config" "$ROOT/target/debug/tandem-config" ""; do
    [ -x "$gen" ] && break
  done
  [ -n "$gen" ] || die_proxy "no tandem-config helper (cargo build --release -p tandem-tests)" || return 1
  # Media is anchored: every call takes two relay port pairs for its 1 s (plus set-up and BYE), so
  # the range must hold RATE x ~1.2 s calls at once: 16384-59999 holds about 10,900.
  "$gen" --sip "$sip" --admin "$admin" --server "127.0.0.1:$UAS_PORT/udp" \
    --media-ports "${MEDIA_PORTS:-16384-59999}" >"$dir/tandem.toml" || return 1
  sed -i "s/^grpc_listen = .*/grpc_listen = \"$grpc\"/" "$dir/tandem.toml"
  [ "${TANDEM_MEDIA:-on}" = off ] && sed -i '/^\[media\]$/a enabled = false' "$dir/tandem.toml"
  return 0
}

# Starts the Tandem configured in $1/tandem.toml in its own process group on the CPUs $2 (taskset
# list, empty: any); log in $1/tandem.log. Sets LAUNCHED_PID.
launch_tandem() {
  local dir=$1 cpus=$2 bin=${TANDEM_BIN:-$ROOT/target/release/tandem}
  [ -x "$bin" ] || die_proxy "no Tandem binary at $bin (cargo build --release -p tandem)" || return 1
  RUST_LOG=${RUST_LOG:-warn} setsid ${cpus:+taskset -c "$cpus"} ${LAUNCH_NICE:+nice -n "$LAUNCH_NICE"} "$bin" --config "$dir/tandem.toml" \
    >"$dir/tandem.log" 2>&1 &
  LAUNCHED_PID=$!
}

# One load step of $2 calls per second through the proxy (process group PROXY_PID), results in the
# folder $3 ($1 names the proxy). Sets STEP_CALLS STEP_OK STEP_FAILED, STEP_CPU (proxy CPU s per
# 1,000 calls), STEP_PEER_CPU (the same for PEER_PID, "-" without one), STEP_STALLED (% of the step's time some
# task waited for a CPU: the machine is saturated, by the load or by anything else),
# STEP_MEAN STEP_P50 STEP_P99 (INVITE→200 ms), STEP_MEM (peak PSS MiB) and STEP_AFTER (PSS MiB at the
# end); returns 1 if any call failed or did not finish.
run_step() {
  local rate=$2 dir=$3 t0 t1 p0=0 p1=0 c0 c1 sampler peak rtt perf
  STEP_CALLS=$(($2 * STEP_SECONDS))
  mkdir -p "$dir"
  t0=$(group_ticks "$PROXY_PID")
  [ -n "${PEER_PID:-}" ] && p0=$(group_ticks "$PEER_PID")
  c0=$(cpu_pressure)
  # samples every 0.5 s while this script lives, for the step's time and its bound at most
  (peak=0 n=$(((STEP_SECONDS + 30) * 2))
   while [ $n -gt 0 ] && kill -0 $$ 2>/dev/null; do
     v=$(group_pss_kib "$PROXY_PID"); [ "$v" -gt "$peak" ] && peak=$v && echo "$peak" >"$dir/pss_peak"
     n=$((n - 1)); sleep 0.5
   done) &
  sampler=$!
  # PERF_STAT=1: the proxy's CPU time, context switches and system calls during the step;
  # PERF_RECORD=1: a profile of it (perf.data in the step's folder; PERF_RECORD_ARGS, default -F 1999; PERF_ON=peer:
  # of the standby instead)
  perf=""
  if [ "${PERF_STAT:-0}" = 1 ] && command -v perf >/dev/null; then
    perf stat -e task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait \
      -e syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_writev \
      -e syscalls:sys_enter_read,syscalls:sys_enter_futex \
      -p "$PROXY_PID" -o "$dir/perf-stat.txt" 2>/dev/null &
    perf=$!
  elif [ "${PERF_RECORD:-0}" = 1 ] && command -v perf >/dev/null; then
    # shellcheck disable=SC2086 # options
    perf record ${PERF_RECORD_ARGS:--F 1999} -p "$([ "${PERF_ON:-}" = peer ] && echo "$PEER_PID" || echo "$PROXY_PID")" \
      -o "$dir/perf.data" >/dev/null 2>&1 &
    perf=$!
  fi
  (cd "$dir" && exec ${LOAD_CPUS:+taskset -c "$LOAD_CPUS"} sipp "$PROXY_HOST:$PROXY_PORT" -sf "$SCEN/uac_load.xml" -s 100 \
    -i 127.0.0.1 -p "$UAC_PORT" -mi 127.0.0.1 -mp "$UAC_MEDIA" -cp "$UAC_CTL" -t u1 -buff_size "$BUFF" \
    -r "$rate" -m "$STEP_CALLS" -l $((rate * 5)) -nostdin -timeout $((STEP_SECONDS + 5))s -timeout_error \
    -trace_stat -stf uac.csv -fd 1 -trace_rtt -rtt_freq 100 >uac.out 2>&1)
  c1=$(cpu_pressure)
  t1=$(group_ticks "$PROXY_PID")
  if [ -n "$perf" ]; then
    kill -INT "$perf" 2>/dev/null
    wait "$perf" 2>/dev/null
  fi
  [ -n "${PEER_PID:-}" ] && p1=$(group_ticks "$PEER_PID")
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  peak=$(cat "$dir/pss_peak" 2>/dev/null || echo 0)
  rtt=$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1)
  STEP_OK=$(stat_field "$dir/uac.csv" "SuccessfulCall(C)")
  STEP_FAILED=$(stat_field "$dir/uac.csv" "FailedCall(C)")
  STEP_CPU=$(per_thousand_calls $((t1 - t0)))
  STEP_PEER_CPU=-
  [ -n "${PEER_PID:-}" ] && STEP_PEER_CPU=$(per_thousand_calls $((p1 - p0)))
  STEP_STALLED=$(cpu_stalled_percent "$c0" "$c1")
  STEP_P50=$(rtt_percentile "$rtt" 50)
  STEP_P99=$(rtt_percentile "$rtt" 99)
  STEP_MEAN=$(rtt_mean "$rtt")
  STEP_AFTER=$(awk -v k="$(group_pss_kib "$PROXY_PID")" 'BEGIN { printf "%.1f", k / 1024 }')
  STEP_MEM=$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')
  [ "$STEP_FAILED" -eq 0 ] && [ "$STEP_OK" -eq "$STEP_CALLS" ]
}
# CPU seconds per 1,000 successful calls of the step for $1 ticks
per_thousand_calls() {
  awk -v d="$1" -v hz="$TICKS" -v n="$STEP_OK" 'BEGIN { if (n > 0) printf "%.3f", d / hz / n * 1000; else print "n/a" }'
}
