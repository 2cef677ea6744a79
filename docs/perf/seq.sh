#!/usr/bin/env bash
# Sequential A/B: each binary drives its own worker alone (perf/drive.py, c=1), the binaries
# alternating ROUNDS times; prints the median of the per-run p50s. Unlike ab.py no two workers
# live at once, so one binary's work made ahead (slots, leaves, session dirs) cannot land on
# the other's jobs. Usage: docs/perf/seq.sh ROUNDS JOBS BIN...
set -euo pipefail
rounds=$1 jobs=$2
shift 2
here=$(dirname "$0")
declare -A runs
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    p50=$(python3 "$here/drive.py" "$bin" "$jobs" 2>&1 >/dev/null | tail -1 | awk '{print $2}')
    runs[$bin]="${runs[$bin]:-} $p50"
  done
done
for bin in "$@"; do
  printf '%s: ' "$bin"
  tr ' ' '\n' <<<"${runs[$bin]}" | grep . | sort -n |
    awk '{a[NR]=$1} END {printf "median p50 %.3f ms (runs:", a[int((NR+1)/2)]; for (i=1;i<=NR;i++) printf " %s", a[i]; print ")"}'
done
