#!/usr/bin/env bash
# Benchmark of `airgap serve` as a site's registry (issue 20): a fleet of clients pulling at
# once, from `airgap serve` of the bundle and from the CNCF distribution registry holding the
# same images, in one run on the same data:
#
#   layer   N clients GET the set's biggest layer at the same moment
#   images  client i pulls image i mod count (manifest by tag, index children, config, layers)
#
# for N = 64 and 256 (BENCH_FLEET="64 256"). Clients are threads of scripts/fleet.py, one HTTP
# connection each; every byte is hashed and compared with its digest, and any mismatch, short
# body or error status makes the script exit 1 (after the table).
#
#   scripts/bench.sh fleet-large   # or: scripts/bench-fleet.sh large
#   scripts/bench.sh fleet-many
#
# Per variant: aggregate MiB/s (bytes every client received / wall time from the moment all
# start), and the server's peak RSS: VmHWM of a fresh `airgap serve` process (default
# --memory 64M), and of the distribution registry after resetting its peak (/proc/PID/clear_refs
# 5) just before the fleet. Environment: BENCH_SCALE (default 1), BENCH_FLEET, BENCH_KEEP=1,
# BENCH_NO_CACHE=1 (also run `airgap serve --frame-cache 0`, every read decoding its own
# frames, as server "serve uncached": an A/B of the shared frames in the same run).
# Output: a table on stdout, also target/bench/fleet-SET.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SET=${1:-}
case "$SET" in
  large | many) ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    [[ $SET == -h || $SET == --help ]] && exit 0
    exit 2
    ;;
esac
SCALE=${BENCH_SCALE:-1}
FLEET=${BENCH_FLEET:-64 256}

unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

bash scripts/install-deps.sh
cargo build --profile profiling --bin airgap --example bench_seed
AIRGAP=$ROOT/target/profiling/airgap
SEED_BIN=$ROOT/target/profiling/examples/bench_seed
OUT=$ROOT/target/bench
WORK=$OUT/work-fleet-$SET
REPORT=$OUT/fleet-$SET.txt
rm -rf "$WORK"
mkdir -p "$WORK/seed" "$WORK/tmp"

SERVE_PID=
SEED_CHILD=
cleanup() {
  local status=$?
  set +e
  [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null
  if [[ -n $SEED_CHILD ]]; then
    [[ -n ${SEED[1]:-} ]] && eval "exec ${SEED[1]}>&-"
    for _ in $(seq 100); do kill -0 "$SEED_CHILD" 2>/dev/null || break; sleep 0.1; done
    kill "$SEED_CHILD" 2>/dev/null
  fi
  [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> seeding the '$SET' set (scale $SCALE) into a distribution registry"
coproc SEED { TMPDIR="$WORK/tmp" exec "$SEED_BIN" "$SET" "$SCALE" "$WORK/seed"; }
SEED_CHILD=$SEED_PID
read -r -t 1800 -u "${SEED[0]}" word SRC_HOST _ || { echo "seeding failed" >&2; exit 1; }
[[ $word == ready ]] || { echo "seeding: $word" >&2; exit 1; }

echo "==> packing it"
{
  echo "images:"
  while IFS=$'\t' read -r _ repo tag _ _; do echo "- image: $SRC_HOST/$repo:$tag"; done <"$WORK/seed/images.tsv"
  echo "registries:"
  echo "  $SRC_HOST: http://$SRC_HOST"
} >"$WORK/airgap.yaml"
"$AIRGAP" pack "$WORK/airgap.yaml" -o "$WORK/bundle.tar.zst" -q

# The registry process answering on SRC_HOST's port.
SRC_PORT=${SRC_HOST##*:}
DIST_PID=$(ss -Hltnp "sport = :$SRC_PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
[[ -n $DIST_PID ]] || { echo "cannot find the registry's process on port $SRC_PORT" >&2; exit 1; }

# The biggest layer (blobs.tsv: repo digest size path).
read -r BIG_REPO BIG_DIGEST BIG_SIZE _ < <(sort -t$'\t' -k3,3nr "$WORK/seed/blobs.tsv" | head -1)

hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

serve_start() { # [EXTRA SERVE ARGS]
  # Gone first: the shell may truncate it only after the loop below has read the last run's.
  rm -f "$WORK/serve.out"
  "$AIRGAP" serve "$WORK/bundle.tar.zst" --listen 127.0.0.1:0 -q --max-connections 1024 "$@" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVE_PID=$!
  SERVE_HOST=
  for _ in $(seq 600); do
    SERVE_HOST=$(awk '/^listening on / { print $3; exit }' "$WORK/serve.out" 2>/dev/null || true)
    [[ -n $SERVE_HOST ]] && return 0
    sleep 0.1
  done
  cat "$WORK/serve.err" >&2
  exit 1
}

FAILED=0
ROWS=()
fleet() { # SERVER HOST PID N MODE
  local server=$1 host=$2 pid=$3 n=$4 mode=$5 line args
  if [[ $mode == layer ]]; then
    args=(layer "$BIG_REPO" "$BIG_DIGEST" "$BIG_SIZE")
  else
    args=(images "$WORK/seed/images.tsv")
  fi
  [[ $server == distribution ]] && echo 5 >"/proc/$pid/clear_refs"
  if ! line=$(python3 scripts/fleet.py "$host" "$n" "${args[@]}" 2>"$WORK/fleet.err"); then
    FAILED=1
    cat "$WORK/fleet.err" >&2
  fi
  local mibps secs hwm
  mibps=$(awk '{ for (i = 1; i < NF; i++) if ($i == "mibps") print $(i + 1) }' <<<"$line")
  secs=$(awk '{ for (i = 1; i < NF; i++) if ($i == "seconds") print $(i + 1) }' <<<"$line")
  hwm=$(hwm_kib "$pid")
  ROWS+=("$(printf '%-8s %5s  %-13s %9s %8s %12s' "$mode" "$n" "$server" "$mibps" "$secs" \
    "$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')")")
  echo "    $mode x$n from $server: $line, peak RSS ${hwm} KiB"
}

for mode in layer images; do
  for n in $FLEET; do
    echo "==> $mode, $n clients"
    serve_start
    fleet "airgap serve" "$SERVE_HOST" "$SERVE_PID" "$n" "$mode"
    kill "$SERVE_PID"
    wait "$SERVE_PID" 2>/dev/null || true
    SERVE_PID=
    if [[ ${BENCH_NO_CACHE:-0} == 1 ]]; then
      serve_start --frame-cache 0
      fleet "serve uncached" "$SERVE_HOST" "$SERVE_PID" "$n" "$mode"
      kill "$SERVE_PID"
      wait "$SERVE_PID" 2>/dev/null || true
      SERVE_PID=
    fi
    fleet distribution "$SRC_HOST" "$DIST_PID" "$n" "$mode"
  done
done

{
  echo "fleet benchmark, set $SET (scale $SCALE), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "biggest layer: $BIG_SIZE bytes; images: $(wc -l <"$WORK/seed/images.tsv")"
  printf '%-8s %5s  %-13s %9s %8s %12s\n' mode n server "MiB/s" seconds "peak RSS MiB"
  printf '%s\n' "${ROWS[@]}"
  [[ $FAILED == 0 ]] && echo "every byte matched its digest" || echo "MISMATCH OR FAILURE: see above"
} | tee "$REPORT"
exit "$FAILED"
