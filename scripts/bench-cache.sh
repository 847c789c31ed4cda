#!/usr/bin/env bash
# Benchmark of `airgap pack --cache`: how much a re-run after an interruption transfers.
#
#   scripts/bench-cache.sh [large|many]     # default large (the set scripts/bench.sh builds)
#
# Seeds the set with examples/bench_seed.rs (as scripts/bench.sh does), puts an nginx reverse
# proxy in front of the source (proxy_buffering off, so it streams; its access log records each
# response's body bytes and the request's Range), then:
#   full       airgap pack --cache EMPTY through nginx: the bytes of one whole pack
#   killed     airgap pack --cache C through nginx, SIGKILLed once C (blobs + partial files)
#              holds BENCH_CUT percent (default 90) of the set's blob bytes
#   re-run     the same pack again with C: the bytes it transfers, as a share of `full`
#   plain      (with BENCH_COMPARE_BIN=/path/to/an/older/airgap) pack without --cache straight
#              from the source, BENCH_RUNS times (default 3) each, this airgap and that one
#              alternately: the median wall times
# Environment: BENCH_SCALE (as bench.sh), BENCH_CUT, BENCH_RUNS, BENCH_COMPARE_BIN, BENCH_KEEP=1.
# Output: a few lines on stdout, also written to target/bench/cache-SET.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SET=${1:-large}
case "$SET" in
  large | many) ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
SCALE=${BENCH_SCALE:-1}
CUT=${BENCH_CUT:-90}
RUNS=${BENCH_RUNS:-3}
[[ $CUT =~ ^[1-9][0-9]?$ ]] || { echo "BENCH_CUT must be a percentage (1-99)" >&2; exit 2; }
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

bash scripts/install-deps.sh
# nginx counts the bytes (as in scripts/bench-interop.sh, the benchmark's own need).
if ! command -v nginx >/dev/null 2>&1; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light
fi
cargo build --profile profiling --bin airgap --example bench_seed
AIRGAP=$ROOT/target/profiling/airgap
SEED_BIN=$ROOT/target/profiling/examples/bench_seed
OUT=$ROOT/target/bench
WORK=$OUT/work-cache-$SET
REPORT=$OUT/cache-$SET.txt
rm -rf "$WORK"
mkdir -p "$WORK/tmp" "$WORK/seed" "$WORK/logs"

die() {
  echo "bench-cache: $*" >&2
  exit 1
}

SEED_CHILD= NGINX_PID= PACK_PID=
cleanup() {
  local status=$?
  set +e
  [[ -n $PACK_PID ]] && kill -9 "$PACK_PID" 2>/dev/null
  [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  if [[ -n $SEED_CHILD ]]; then
    [[ -n ${SEED[1]:-} ]] && eval "exec ${SEED[1]}>&-"
    for _ in $(seq 100); do
      kill -0 "$SEED_CHILD" 2>/dev/null || break
      sleep 0.1
    done
    kill "$SEED_CHILD" 2>/dev/null
    wait "$SEED_CHILD" 2>/dev/null
  fi
  [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> seeding the '$SET' set (scale $SCALE) into a source registry"
coproc SEED { TMPDIR="$WORK/tmp" exec "$SEED_BIN" "$SET" "$SCALE" "$WORK/seed"; }
# shellcheck disable=SC2153 # set by coproc
SEED_CHILD=$SEED_PID
read -r -t 1800 -u "${SEED[0]}" word SRC_HOST _ || die "the seeding program failed"
[[ $word == ready ]] || die "unexpected answer from the seeding program: $word"
# shellcheck disable=SC1091
source "$WORK/seed/summary.env"

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    [[ -z $(ss -Hltn "sport = :$p") ]] && { echo "$p"; return; }
  done
}

dir=$WORK/nginx
mkdir -p "$dir"
port=$(free_port)
LOG=$WORK/logs/access
cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
  log_format bytes '\$request_method \$status \$body_bytes_sent "\$http_range" \$uri';
  access_log $LOG bytes;
  proxy_temp_path $dir/proxy;
  client_body_temp_path $dir/body;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://$SRC_HOST;
      proxy_set_header Host \$http_host;
      proxy_buffering off;
      proxy_http_version 1.1;
    }
  }
}
EOF
nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
for _ in $(seq 100); do
  [[ -n $(ss -Hltn "sport = :$port") ]] && break
  kill -0 "$NGINX_PID" 2>/dev/null || die "nginx did not start: $(cat "$dir/error.log")"
  sleep 0.05
done
PROXY=127.0.0.1:$port

# The spec: every image, its registry reached through nginx.
SPEC=$WORK/airgap.yaml
{
  echo "images:"
  while IFS=$'\t' read -r _ repo tag _ _; do
    echo "- image: $SRC_HOST/$repo:$tag"
  done <"$WORK/seed/images.tsv"
  echo "registries:"
  echo "  $SRC_HOST: http://$PROXY"
} >"$SPEC"
DIRECT=$WORK/direct.yaml
sed "s|http://$PROXY|http://$SRC_HOST|" "$SPEC" >"$DIRECT"

# Body bytes nginx sent since log line $1 (blobs only: /blobs/ in the URI), and all of them.
bytes_since() {
  awk -v from="$1" 'NR > from { all += $3; if ($NF ~ /\/blobs\//) blobs += $3 }
    END { printf "%d %d\n", blobs, all }' "$LOG"
}
lines() { [[ -f $LOG ]] && wc -l <"$LOG" || echo 0; }
cache_bytes() { du -sb "$1/blobs" "$1/partial" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

echo "==> full: one pack through nginx into an empty cache"
l0=$(lines)
"$AIRGAP" pack "$SPEC" -o "$WORK/full.tar.zst" --cache "$WORK/cache-full" -q
read -r full_blobs full_all < <(bytes_since "$l0")
rm -rf "$WORK/full.tar.zst" "$WORK/cache-full"

echo "==> killed: the same pack, SIGKILLed at $CUT% of the blob bytes in the cache"
C=$WORK/cache
want=$((SEED_BLOB_BYTES * CUT / 100))
l1=$(lines)
"$AIRGAP" pack "$SPEC" -o "$WORK/killed.tar.zst" --cache "$C" -q &
PACK_PID=$!
while kill -0 "$PACK_PID" 2>/dev/null; do
  (($(cache_bytes "$C") >= want)) && break
  sleep 0.02
done
at_kill=$(cache_bytes "$C")
kill -9 "$PACK_PID" 2>/dev/null || die "the pack ended before $CUT% (cache: $at_kill of $SEED_BLOB_BYTES bytes)"
wait "$PACK_PID" 2>/dev/null || true
PACK_PID=
[[ ! -e $WORK/killed.tar.zst ]] || die "a killed pack left a bundle"
sleep 1 # nginx logs the cut responses once it sees the client gone
read -r killed_blobs _ < <(bytes_since "$l1")
partials=$(find "$C/partial" -type f -size +0 | wc -l)

echo "==> re-run with the cache"
l2=$(lines)
t0=$(date +%s%N)
"$AIRGAP" pack "$SPEC" -o "$WORK/rerun.tar.zst" --cache "$C" -q
t1=$(date +%s%N)
read -r rerun_blobs rerun_all < <(bytes_since "$l2")
ranged=$(awk -v from="$l2" 'NR > from && $4 ~ /bytes=/' "$LOG" | wc -l)
"$AIRGAP" verify "$WORK/rerun.tar.zst" -q || die "the re-run's bundle does not verify"

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.1f MiB", a / 1048576 }'; }
{
  echo "set $SET (scale $SCALE): $SEED_IMAGES images, $SEED_BLOBS blobs, $(mib "$SEED_BLOB_BYTES") of blobs"
  echo "full pack through nginx:      $(mib "$full_all") body bytes ($(mib "$full_blobs") of /blobs/)"
  echo "killed at:                    $(mib "$at_kill") in the cache ($(pct "$at_kill" "$SEED_BLOB_BYTES")), $(mib "$killed_blobs") of /blobs/ sent, $partials partial file(s)"
  echo "re-run with the cache:        $(mib "$rerun_all") body bytes = $(pct "$rerun_all" "$full_all") of the full pack ($(mib "$rerun_blobs") of /blobs/, $ranged Range request(s)), $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1e9}') s"
} | tee "$REPORT"

if [[ -n ${BENCH_COMPARE_BIN:-} ]]; then
  echo "==> plain: pack without --cache straight from the source, $RUNS run(s) each"
  declare -a new old
  for _ in $(seq "$RUNS"); do
    for which in new old; do
      bin=$AIRGAP
      [[ $which == old ]] && bin=$BENCH_COMPARE_BIN
      rm -f "$WORK/plain.tar.zst"
      sync
      a=$(date +%s%N)
      "$bin" pack "$DIRECT" -o "$WORK/plain.tar.zst" -q
      b=$(date +%s%N)
      s=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", (b-a)/1e9}')
      if [[ $which == new ]]; then new+=("$s"); else old+=("$s"); fi
    done
  done
  median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  echo "pack without --cache, median of $RUNS: this build $(median "${new[@]}") s ($(echo "${new[*]}")), $BENCH_COMPARE_BIN $(median "${old[@]}") s ($(echo "${old[*]}"))" | tee -a "$REPORT"
fi
