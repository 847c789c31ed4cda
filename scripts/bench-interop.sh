#!/usr/bin/env bash
# Benchmark of issue 13's acceptance: `airgap load` of a bundle with a 100 MiB layer (plus a
# 4 MiB base layer and a config) into a fresh CNCF distribution registry each time,
#
#   direct     straight into the registry (the monolithic path: POST + one PUT per blob)
#   nginx      through an nginx reverse proxy with no limit (what the proxy itself costs)
#   refuse     through nginx answering 500 to every PUT with a body under /blobs/uploads/:
#              a registry that refuses monolithic uploads (airgap falls back to chunks)
#   cap16m     through nginx with `client_max_body_size 16m`: a real 413 above 16 MiB
#              (airgap falls back to chunks, halving the chunk size 64 -> 32 -> 16 MiB)
#   cap16m-cs  the same nginx, with `airgap load --chunk-size 16M`: chunked from the start, so
#              what the two 413s and the refused PUT of `cap16m` cost shows
#
#   scripts/bench.sh interop          # or: scripts/bench-interop.sh
#
# Environment: BENCH_RUNS (default 3; the variants are run in a rotated order each run, so
# none always goes first), BENCH_SCALE (default 1: multiplies the layer sizes), BENCH_KEEP=1,
# BENCH_NGINX_UNBUFFERED=1 (every nginx variant streams request bodies to the registry as they
# arrive, HTTP/1.1 to the registry: `proxy_request_buffering off`, as Harbor's own nginx is set).
#
# nginx runs with its defaults otherwise: request bodies are buffered to a temporary file
# before they are passed on (`proxy_request_buffering on`), HTTP/1.0 to the registry without
# keep-alive, as a stock ingress does. Per load: wall time, airgap's peak RSS and CPU seconds
# (GNU /usr/bin/time -v), the requests nginx saw (PUTs with a body, PATCHes, 413s, 500s,
# request bytes), then every manifest checked at the registry with `skopeo inspect --raw |
# sha256sum` against the source. A mismatch or a failed load makes the script exit 1.
# Output: a table on stdout, also target/bench/interop.txt; every load in target/bench/interop.tsv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

case "${1:-}" in
  -h | --help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac
RUNS=${BENCH_RUNS:-3}
SCALE=${BENCH_SCALE:-1}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_RUNS must be a positive integer" >&2; exit 2; }
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "BENCH_SCALE must be a positive number" >&2; exit 2; }

unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy REGISTRY_AUTH_FILE DOCKER_CONFIG
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

bash scripts/install-deps.sh
# nginx is the benchmark's own need, not the tests'.
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
WORK=$OUT/work-interop
REPORT=$OUT/interop.txt
RAW=$OUT/interop.tsv
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK/tmp" "$WORK/seed" "$WORK/logs"

die() {
  echo "bench-interop: $*" >&2
  exit 1
}

SEED_CHILD= NGINX_PID=
cleanup() {
  local status=$?
  set +e
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

# The source and target registries: examples/bench_seed.rs as a coprocess (see scripts/bench.sh).
echo "==> seeding the 'interop' set (scale $SCALE) into a source registry"
coproc SEED { TMPDIR="$WORK/tmp" exec "$SEED_BIN" interop "$SCALE" "$WORK/seed"; }
# shellcheck disable=SC2153 # set by coproc
SEED_CHILD=$SEED_PID
read -r -t 600 -u "${SEED[0]}" word SRC_HOST _ || die "the seeding program failed"
[[ $word == ready ]] || die "unexpected answer from the seeding program: $word"
# shellcheck disable=SC1091
source "$WORK/seed/summary.env"
reg_start() { # NAME -> REG_HOST
  local word
  echo "start $1" >&"${SEED[1]}"
  read -r -t 120 -u "${SEED[0]}" word _ REG_HOST _ || die "cannot start registry $1"
  [[ $word == started ]] || die "cannot start registry $1: $word"
}
reg_stop() {
  echo "stop $1" >&"${SEED[1]}"
  read -r -t 120 -u "${SEED[0]}" _ _ || die "cannot stop registry $1"
}

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    [[ -z $(ss -Hltn "sport = :$p") ]] && { echo "$p"; return; }
  done
}

# nginx_start VARIANT UPSTREAM -> PROXY_HOST; its access log is $WORK/logs/VARIANT-runN.access
nginx_start() {
  local variant=$1 upstream=$2 dir=$WORK/nginx-$1 port limit=0 refuse=""
  rm -rf "$dir"
  mkdir -p "$dir"
  port=$(free_port)
  [[ $variant == cap16m* ]] && limit=16m
  local stream=""
  if [[ ${BENCH_NGINX_UNBUFFERED:-0} == 1 ]]; then
    stream='proxy_request_buffering off; proxy_buffering off; proxy_http_version 1.1; proxy_set_header Connection "";'
  fi
  if [[ $variant == refuse ]]; then
    # A PUT carrying a body to an upload session: the monolithic flow. The final PUT of a
    # chunked upload has Content-Length 0 and gets through.
    refuse='if ($monolithic) { return 500 "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"monolithic uploads are not supported\",\"detail\":null}]}\n"; }'
  fi
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
  log_format bench '\$request_method \$status \$request_length \$uri \$http_content_length';
  access_log $WORK/logs/$variant-run$RUN.access bench;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  default_type application/json;
  $stream
  map "\$request_method:\$http_content_length" \$monolithic { default 0; "~^PUT:[1-9]" 1; }
  server {
    listen 127.0.0.1:$port;
    client_max_body_size $limit;
    location ~ /blobs/uploads/ {
      $refuse
      proxy_pass http://$upstream;
      proxy_set_header Host \$http_host;
    }
    location / {
      proxy_pass http://$upstream;
      proxy_set_header Host \$http_host;
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
  PROXY_HOST=127.0.0.1:$port
}
nginx_stop() {
  kill "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=
}

# Every manifest of the set at HOST against the source's digest: prints "OK of ALL".
check_target() {
  local ok=0 all=0 ref want got f=$WORK/tmp/check
  while IFS=$'\t' read -r ref want; do
    all=$((all + 1))
    if skopeo inspect --raw --tls-verify=false "docker://$1/$ref" >"$f" 2>>"$WORK/logs/check.err"; then
      got=sha256:$(sha256sum <"$f" | cut -d' ' -f1)
      [[ $got == "$want" ]] && ok=$((ok + 1))
    fi
  done <"$WORK/seed/checks.tsv"
  echo "$ok $all"
}

SPEC=$WORK/airgap.yaml
{
  echo "images:"
  while IFS=$'\t' read -r _ repo tag _ _; do echo "- image: $SRC_HOST/$repo:$tag"; done <"$WORK/seed/images.tsv"
  echo "registries:"
  echo "  $SRC_HOST: http://$SRC_HOST"
} >"$SPEC"
BUNDLE=$WORK/bundle.tar.zst
"$AIRGAP" pack "$SPEC" -o "$BUNDLE" -q </dev/null
echo "==> bundle: $(stat -c %s "$BUNDLE") bytes, $SEED_BLOBS blobs, $SEED_BLOB_BYTES blob bytes"

VARIANTS=(direct nginx refuse cap16m cap16m-cs)
printf 'run\tvariant\twall_s\trss_kib\tcpu_s\tputs_body\tpatches\tst413\tst500\treq_mib\tdigests_ok\tdigests_all\tloadavg\n' >"$RAW"
FAILED=0
for RUN in $(seq "$RUNS"); do
  echo "==> run $RUN of $RUNS"
  n=${#VARIANTS[@]}
  for i in $(seq 0 $((n - 1))); do
    v=${VARIANTS[$(((i + RUN - 1) % n))]}
    reg_start "target-$v"
    tgt=$REG_HOST
    host=$tgt
    if [[ $v != direct ]]; then
      nginx_start "$v" "$tgt"
      host=$PROXY_HOST
    fi
    sync
    load1=$(cut -d' ' -f1 /proc/loadavg)
    log=$WORK/logs/$v-run$RUN.log tf=$WORK/logs/$v-run$RUN.time
    extra=()
    [[ $v == cap16m-cs ]] && extra=(--chunk-size 16M)
    t0=$(date +%s%N)
    if ! /usr/bin/time -v -o "$tf" "$AIRGAP" load "$BUNDLE" --registry "$host" --plain-http -q \
      "${extra[@]}" </dev/null >"$log" 2>&1; then
      echo "  $v: LOAD FAILED" >&2
      tail -5 "$log" >&2
      FAILED=1
    fi
    t1=$(date +%s%N)
    [[ $v != direct ]] && nginx_stop
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf")
    cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$tf")
    acc=$WORK/logs/$v-run$RUN.access
    if [[ -f $acc ]]; then
      read -r puts patches s413 s500 reqmib < <(awk '
        $1 == "PUT" && $4 ~ /\/blobs\/uploads\// && $5 + 0 > 0 { p++ }
        $1 == "PATCH" { c++ } $2 == 413 { a++ } $2 == 500 { b++ } { r += $3 }
        END { printf "%d %d %d %d %.1f\n", p, c, a, b, r / 1048576 }' "$acc")
    else
      puts=- patches=- s413=- s500=- reqmib=-
    fi
    read -r ok all < <(check_target "$tgt")
    [[ $ok == "$all" ]] || { FAILED=1; echo "  $v: DIGEST MISMATCH ($ok of $all)" >&2; }
    printf '  %-9s %6.2f s  %6.1f MiB RSS  %5s CPU s  PUT+body %s  PATCH %s  413 %s  500 %s  digests %s/%s\n' \
      "$v" "$wall" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$cpu" "$puts" "$patches" "$s413" "$s500" "$ok" "$all"
    grep -h 'warning' "$log" | grep -v 'plain HTTP' | sed 's/^/           /' || true
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$RUN" "$v" "$wall" "$rss" "$cpu" \
      "$puts" "$patches" "$s413" "$s500" "$reqmib" "$ok" "$all" "$load1" >>"$RAW"
    reg_stop "target-$v"
  done
done

# The report: per variant the median (and range) over the runs, and the ratio to `direct`.
{
  echo "airgap interop benchmark (issue 13 acceptance), $RUNS run(s), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "data: 1 image, $SEED_BLOBS blobs, $(awk -v b="$SEED_BLOB_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }') MiB (a 100 MiB layer x BENCH_SCALE=$SCALE)"
  [[ ${BENCH_NGINX_UNBUFFERED:-0} == 1 ]] && echo "nginx: proxy_request_buffering off, HTTP/1.1 to the registry (BENCH_NGINX_UNBUFFERED=1)"
  echo "machine: $(nproc) CPUs; airgap $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(nginx -v 2>&1 | sed 's/^nginx version: //'); docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?')"
  echo "1-minute load average at the start of each load: $(awk -F'\t' 'NR > 1 { print $13 }' "$RAW" | sort -n | sed -n '1p;$p' | paste -sd- -)"
  echo
  printf '%-9s %8s %15s %9s %7s %9s %6s %5s %5s %8s %8s\n' variant 'wall s' '(min-max)' 'RSS MiB' 'CPU s' 'PUT+body' PATCH 413 500 'req MiB' 'vs direct'
  awk -F'\t' '
    function median(list,   a, n, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NR == 1 { next }
    { v = $2; if (!(v in walls)) order[++nv] = v
      walls[v] = walls[v] " " $3; cpus[v] = cpus[v] " " $5
      if (!(v in lo) || $3 + 0 < lo[v]) lo[v] = $3 + 0
      if (!(v in hi) || $3 + 0 > hi[v]) hi[v] = $3 + 0
      if ($4 + 0 > rss[v]) rss[v] = $4 + 0
      puts[v] = $6; patches[v] = $7; s413[v] = $8; s500[v] = $9; req[v] = $10 }
    END {
      base = median(walls["direct"])
      for (i = 1; i <= nv; i++) { v = order[i]; w = median(walls[v])
        printf "%-9s %8.2f %15s %9.1f %7.2f %9s %6s %5s %5s %8s %7.2fx\n", v, w, sprintf("(%.2f-%.2f)", lo[v], hi[v]),
          rss[v] / 1024, median(cpus[v]), puts[v], patches[v], s413[v], s500[v], req[v], w / base } }' "$RAW"
  echo
  echo "wall: median over the runs (range in brackets); RSS: airgap's largest over the runs; CPU s:"
  echo "      airgap's user + system, median. Requests (last run, counted by nginx): PUTs with a body"
  echo "      to an upload session, PATCHes, answers 413 and 500, request bytes nginx read (headers"
  echo "      included; a body refused before it was read is not counted)."
  echo "target: refuse and cap16m within 1.5x of direct, RSS under 128 MiB."
  awk -F'\t' 'NR > 1 { ok += $11; all += $12 } END { printf "digests: %d of %d manifest checks match the source (skopeo inspect --raw | sha256sum, after every load)\n", ok, all }' "$RAW"
} | tee "$REPORT"
echo "(written to $REPORT; every load in $RAW)"
[[ $FAILED == 0 ]] || die "a load failed or a digest did not match"
