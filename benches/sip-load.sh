#!/bin/bash
# sip-load.sh -- the same SIPp call load through Kamailio, then through Tandem, and how they compare.
#
# How to run (root not needed; everything stays on 127.0.0.1; about 6 minutes at most):
#   cargo build --release -p tandem -p tandem-tests   # Tandem and the tandem-config helper
#   benches/sip-load.sh                               # or: RATES="500 1000" STEP_SECONDS=5 benches/sip-load.sh
#
# What it does, for each proxy in turn (Kamailio with benches/kamailio-bench.cfg: tm + rr + dialog,
# 2 UDP workers, tlsf allocator, 2 GiB shared memory; then target/release/tandem or $TANDEM_BIN):
#   SIPp caller (tests/scenarios/uac_load.xml: INVITE, 200, ACK, 1 s call, BYE) → proxy → SIPp media
#   server (uas_load.xml), UDP, -buff_size 4194304 on both SIPp ends. The call rate steps up through
#   $RATES; each step places RATE × STEP_SECONDS calls and is bounded by SIPp's -timeout
#   (STEP_SECONDS + 5 s). The first step with a failed or unfinished call ends that proxy's run.
# What it prints, per step and for the highest step with 0 failed calls:
#   CPU seconds per 1,000 calls of the proxy (utime+stime from /proc/PID/stat, summed over all the
#   proxy's processes), peak memory (PSS from /proc/PID/smaps_rollup summed over its processes,
#   sampled every 0.5 s; after_MiB: right after the step's last call ended), SIPp's INVITE→200 response
#   time mean/p50/p99 (-trace_rtt: SIPp's clock counts whole milliseconds, so on loopback most samples
#   are 0 ms). Then the ratios Tandem / Kamailio.
# TANDEM_MEDIA=off runs Tandem with [media] enabled = false (signalling only, as Kamailio here).
# If Tandem is missing or fails, Kamailio's figures are still printed. Files: $BENCH_DIR (default
# target/sip-load), one folder per proxy and step.
#
# Measured 2026-11-21 on the project VM (2 vCPU AMD EPYC, 24 GiB, Debian 12, kernel 6.18), SIPp 3.6.1,
# Kamailio 5.6.3, RATES="1000 2000 3000 4000 5000 6000 7000 7500 8000 9000", 10 s per step. SIPp's
# caller and media server share the 2 CPUs with the proxy, so the machine saturates, not only the proxy,
# and figures move between runs (compare ratios from one run).
#   Kamailio: 0 failed calls up to 6000 cps (7000: 1409 failed); at 6000 cps 0.107 CPU s per 1,000
#             calls, peak PSS 957 MiB, INVITE→200 mean 3.05 ms, p99 64 ms.
#   Tandem:   0 failed calls up to 9000 cps (the highest step); at 6000 cps 0.081 CPU s per 1,000
#             calls, peak PSS 297 MiB, mean 1.14 ms, p99 8 ms; at 9000 cps 0.079 s, 485 MiB.
#   Tandem / Kamailio: highest clean rate x1.50; at 6000 cps CPU per call x0.76, memory x0.31.
#   An earlier run the same day (Tandem before its last two optimisations): Kamailio clean to 4000 cps,
#   Tandem to 7000 cps (x1.75), CPU per call x0.80 at 4000 cps.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
RATES=${RATES:-"200 500 1000 2000 3000 4000 5000 6000 8000"}
STEP_SECONDS=${STEP_SECONDS:-10}
BASE=${BENCH_PORT_BASE:-19000}
BUFF=4194304
UAS_PORT=$BASE UAS_MEDIA=$((BASE + 10)) PROXY_PORT=$((BASE + 20)) ADMIN_PORT=$((BASE + 21))
UAC_PORT=$((BASE + 30)) UAC_MEDIA=$((BASE + 40)) UAS_CTL=$((BASE + 50)) UAC_CTL=$((BASE + 51))
# shellcheck source=lib/sip-load-common.sh
. "$HERE/lib/sip-load-common.sh"
BENCH_DIR=${BENCH_DIR:-$ROOT/target/sip-load}

declare -A RESULT # RESULT[proxy.field]

start_kamailio() { # $1 = folder
  launch_kamailio "$1" "" -l "udp:127.0.0.1:$PROXY_PORT" -A 'NEXT_HOST="127.0.0.1"' -A "NEXT_PORT=$UAS_PORT"
  PROXY_PID=$LAUNCHED_PID
}

start_tandem() { # $1 = folder
  write_tandem_config "$1" "127.0.0.1:$PROXY_PORT" "127.0.0.1:$ADMIN_PORT" "127.0.0.1:$((BASE + 22))" || return 1
  launch_tandem "$1" "" || return 1
  PROXY_PID=$LAUNCHED_PID
}

step_row() { printf '  %6s %7s %7s %7s %10s %8s %7s %7s %9s %10s\n' "$@"; }

bench_proxy() { # $1 = name (kamailio|tandem)
  local name=$1 dir=$BENCH_DIR/$1 rate
  rm -rf "$dir"
  mkdir -p "$dir"
  UAS_PID="" PROXY_PID=""
  start_uas "$dir"
  if ! "start_$name" "$dir"; then
    stop_pid "$UAS_PID"
    return
  fi
  if ! wait_sip_ready "127.0.0.1:$PROXY_PORT"; then
    log "  $name did not answer OPTIONS on 127.0.0.1:$PROXY_PORT; log: $(ls "$dir"/*.log | head -1)"
    tail -5 "$dir"/*.log 2>/dev/null | sed 's/^/    /'
    stop_pid "$PROXY_PID"
    stop_pid "$UAS_PID"
    return
  fi
  step_row rate calls ok failed "cpu_s/1k" mean_ms p50_ms p99_ms peak_MiB after_MiB
  for rate in $RATES; do
    run_step "$name" "$rate" "$dir/rate-$rate"
    local clean=$?
    step_row "$rate" "$STEP_CALLS" "$STEP_OK" "$STEP_FAILED" "$STEP_CPU" "$STEP_MEAN" "$STEP_P50" "$STEP_P99" \
      "$STEP_MEM" "$STEP_AFTER"
    if [ $clean = 0 ]; then
      RESULT[$name.cpu.$rate]=$STEP_CPU RESULT[$name.mem.$rate]=$STEP_MEM RESULT[$name.mean.$rate]=$STEP_MEAN
      RESULT[$name.p99.$rate]=$STEP_P99
      RESULT[$name.rate]=$rate RESULT[$name.cpu]=$STEP_CPU RESULT[$name.mem]=$STEP_MEM
      RESULT[$name.p50]=$STEP_P50 RESULT[$name.p99]=$STEP_P99 RESULT[$name.mean]=$STEP_MEAN
    else
      log "  step $rate cps had failed or unfinished calls: stopping ($dir/rate-$rate)"
      break
    fi
    kill -0 "$PROXY_PID" 2>/dev/null || { log "  $name exited; log in $dir"; break; }
  done
  local uas_failed; uas_failed=$(stat_field "$dir/uas.csv" "FailedCall(C)")
  stop_pid "$PROXY_PID"
  stop_pid "$UAS_PID"
  [ "$uas_failed" = 0 ] || log "  (media server SIPp counted $uas_failed failed calls)"
  if [ -n "${RESULT[$name.rate]:-}" ]; then
    log "  $name: highest rate with 0 failed calls ${RESULT[$name.rate]} cps; CPU ${RESULT[$name.cpu]} s per 1,000 calls;" \
      "peak memory ${RESULT[$name.mem]} MiB; INVITE→200 mean ${RESULT[$name.mean]} ms, p50 ${RESULT[$name.p50]} ms," \
      "p99 ${RESULT[$name.p99]} ms"
  else
    log "  $name: no step without failed calls"
  fi
}

ratio() { # Tandem / Kamailio for field $1 (e.g. "cpu", or "cpu.2000" for one rate)
  awk -v t="${RESULT[tandem.$1]:-}" -v k="${RESULT[kamailio.$1]:-}" \
    'BEGIN { if (t == "" || k == "" || t == "n/a" || k == "n/a" || k + 0 == 0) print "n/a"; else printf "%.2f", t / k }'
}

command -v sipp >/dev/null || { echo "sipp is not installed (scripts/install-test-deps.sh)"; exit 1; }
mkdir -p "$BENCH_DIR"
trap 'stop_pid "${PROXY_PID:-}"; stop_pid "${UAS_PID:-}"' EXIT
log "sip-load: $(date -u +%FT%TZ), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
log "  $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), $(kamailio -v 2>/dev/null | head -1)"
log "  rates: $RATES cps; $STEP_SECONDS s of new calls per step; 1 s calls; UDP; net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max)"
if command -v kamailio >/dev/null; then
  log "== Kamailio (benches/kamailio-bench.cfg: tm + rr + dialog, 2 UDP workers, tlsf, 2048 MiB shm)"
  bench_proxy kamailio
else
  log "== Kamailio: not installed, skipped"
fi
log "== Tandem (${TANDEM_BIN:-target/release/tandem}, RUST_LOG=${RUST_LOG:-warn})"
bench_proxy tandem
log "== Tandem / Kamailio"
log "  at each one's highest clean rate: rate x$(ratio rate); CPU per call x$(ratio cpu); peak memory x$(ratio mem);" \
  "response time mean x$(ratio mean), p50 x$(ratio p50), p99 x$(ratio p99)"
common=$(awk -v t="${RESULT[tandem.rate]:-0}" -v k="${RESULT[kamailio.rate]:-0}" 'BEGIN { print (t < k ? t : k) }')
if [ "$common" != 0 ]; then
  log "  at $common cps (the highest rate both ran without failures): CPU per call x$(ratio "cpu.$common");" \
    "peak memory x$(ratio "mem.$common"); response time mean x$(ratio "mean.$common"), p99 x$(ratio "p99.$common")"
fi
