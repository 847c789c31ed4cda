#!/usr/bin/env bash
# Benchmark: airgap pack/load against the skopeo workflow a user scripts today and against
# the raw limits of this machine, on the same deterministic image set, in one invocation.
#
#   scripts/bench.sh large     # ~12 images (3 multi-platform), shared base, ~1 GiB unique
#   scripts/bench.sh many      # 240 small single-platform images, shared base, ~200 MB
#   scripts/bench.sh large many  # both, one after the other
#   scripts/bench.sh interop   # issue 13's acceptance: load of a 100 MiB layer direct, through
#                              # nginx, nginx refusing monolithic PUTs, nginx capping bodies at
#                              # 16 MiB (scripts/bench-interop.sh; its own header and report)
#   scripts/bench.sh fleet-large # issue 20's acceptance: 64 and 256 clients pulling at once
#   scripts/bench.sh fleet-many  # from `airgap serve` and from distribution (scripts/bench-fleet.sh)
#   scripts/bench.sh wan [SET]   # pack over a WAN link: the source behind the harness proxy
#                              # shaped to 50 ms round trip, 200 Mbit/s; skopeo vs airgap vs
#                              # the bandwidth limit, large and many (scripts/bench-wan.sh)
#
# Environment:
#   BENCH_RUNS=3       runs; every figure printed is the median over them (default 1)
#   BENCH_SCALE=0.1    multiplies every layer size (default 1) for a quick smoke run
#   BENCH_PARALLEL=4   parallel curl processes for the raw limits (default 4)
#   BENCH_SKOPEO_WORKERS=4  skopeo processes at once in the "skopeo x4" baseline (default 4)
#   BENCH_KEEP=1       keep target/bench/work-SET (registries' storage, bundles, logs)
#   BENCH_PERF=1       run airgap pack and load under `perf record -g`; the top of each
#                      profile goes to target/bench/SET-perf-{pack,load}.txt (slows them)
#
# Installs what is missing (scripts/install-deps.sh, plus curl), builds airgap and the seeding
# program (examples/bench_seed.rs), starts a source registry on loopback (the CNCF
# distribution registry of scripts/install-deps.sh), pushes the image set through the registry
# API, then per run, each target registry fresh:
#   skopeo pack     skopeo copy --all --preserve-digests docker://SRC/… oci:DIR:NAME per image,
#                   then tar -C DIR -cf - . | zstd -T0 -3
#   skopeo x4 pack  the strongest workflow a careful user scripts: the images dealt round-robin
#                   to BENCH_SKOPEO_WORKERS (4) workers running at once, each copying its share
#                   into an OCI layout of its own (one layout per worker: skopeo locks none),
#                   then one tar | zstd -T0 -3 of the layouts
#   airgap pack     airgap pack SPEC -o bundle.tar.zst
#   limits          every blob GET with BENCH_PARALLEL curls to /dev/null; zstd -T0 -3 of the
#                   same bytes (read from the source's storage, written to a file)
#   skopeo load     zstd -dc | tar -x into a directory, then skopeo copy --all
#                   --preserve-digests oci:DIR:NAME docker://TARGET/… per image
#   skopeo x4 load  the same from the x4 bundle: extract, then the same workers each pushing
#                   their share from their own layout at once
#   airgap load     airgap load bundle.tar.zst --registry TARGET --plain-http
#   re-loads        all three again into the same targets (skopeo: extract and copy again)
#   serve           the GET limit again, answered by `airgap serve` of the bundle: first with the
#                   bundle read from the disk (pack wrote it past the page cache), then again on
#                   the same server with it in the page cache, as the registry's storage is
#   delta           (run 1) v1 = all images but the last, packed; v2 packed --base v1: sizes
#   limits          zstd -d of airgap's bundle to /dev/null; every blob uploaded with
#                   BENCH_PARALLEL curls (POST, then a monolithic PUT) into a fresh registry
# Every step starts with `sync`, so none pays for write-back an earlier one left behind; after
# each pack a `sync` is timed too (the skopeo workflow never syncs its bundle; airgap pack does,
# inside its own time), giving the "durable" line.
# After each load, every manifest at the target (each image by tag, each child of an index by
# digest) is fetched with `skopeo inspect --raw` and its sha256 compared with the source's;
# any mismatch makes the script exit 1 (after printing the table).
#
# Every image of the sets is OCI-typed (OCI manifests and indexes, tar+gzip layers): skopeo
# cannot keep the digest of a Docker manifest list in an OCI layout (--preserve-digests refuses,
# without it the digest changes), and both workflows must move the same data. skopeo reaches the
# plain-HTTP registries with --src-tls-verify=false / --dest-tls-verify=false and a policy file
# accepting anything; every copy is -q, and airgap runs with -q too.
#
# Output: a table on stdout, also written to target/bench/SET.txt (per step: wall time, peak
# RSS, bytes, CPU seconds, and the CPU seconds of the registry it reads from or writes to, found
# by its port with `ss`; then the ratios, the CPU floor and the time until each bundle is on
# disk); every run's raw figures in target/bench/SET.tsv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

# Several sets (`scripts/bench.sh large many`): one invocation each, in turn.
if [[ $# -gt 1 ]]; then
  status=0
  for set in "$@"; do
    bash "${BASH_SOURCE[0]}" "$set" || status=1
  done
  exit "$status"
fi
SET=${1:-}
case "$SET" in
  large | many) ;;
  interop) exec bash scripts/bench-interop.sh ;;
  fleet-large | fleet-many) exec bash scripts/bench-fleet.sh "${SET#fleet-}" ;;
  wan)
    shift
    exec bash scripts/bench-wan.sh "$@"
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
RUNS=${BENCH_RUNS:-1}
SCALE=${BENCH_SCALE:-1}
PAR=${BENCH_PARALLEL:-4}
WORKERS=${BENCH_SKOPEO_WORKERS:-4}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_RUNS must be a positive integer" >&2; exit 2; }
[[ $PAR =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_PARALLEL must be a positive integer" >&2; exit 2; }
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_SKOPEO_WORKERS must be a positive integer" >&2; exit 2; }
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "BENCH_SCALE must be a positive number" >&2; exit 2; }

# Everything talks to loopback: no proxy, no credentials from the environment.
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy REGISTRY_AUTH_FILE DOCKER_CONFIG
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

# ---------------------------------------------------------------------------------------------
# Tools and build

bash scripts/install-deps.sh
if ! command -v curl >/dev/null 2>&1; then
  echo "installing: curl"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y curl
fi
cargo build --profile profiling --bin airgap --example bench_seed

export AIRGAP=$ROOT/target/profiling/airgap
SEED_BIN=$ROOT/target/profiling/examples/bench_seed
OUT=$ROOT/target/bench
export WORK=$OUT/work-$SET
REPORT=$OUT/$SET.txt
RAW=$OUT/$SET.tsv
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK/tmp" "$WORK/seed" "$WORK/logs"
export SEED_DIR=$WORK/seed PAR WORKERS
export POLICY=$WORK/policy.json
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$POLICY"

die() {
  echo "bench: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------
# The registries: examples/bench_seed.rs runs as a coprocess holding every registry; closing
# its stdin (or this script dying) stops them all and deletes their storage.

SEED_CHILD=
cleanup() {
  local status=$?
  set +e
  if [[ -n ${SERVE_PID:-} ]]; then
    kill "$SERVE_PID" 2>/dev/null
  fi
  if [[ -n ${SAMPLER_PID:-} ]]; then
    kill "$SAMPLER_PID" 2>/dev/null
    wait "$SAMPLER_PID" 2>/dev/null
  fi
  if [[ -n $SEED_CHILD ]]; then
    local pid=$SEED_CHILD
    [[ -n ${SEED[1]:-} ]] && eval "exec ${SEED[1]}>&-"
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  if [[ ${BENCH_KEEP:-0} != 1 ]]; then
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> seeding the '$SET' set (scale $SCALE) into a source registry"
seed_started=$(date +%s%N)
coproc SEED { TMPDIR="$WORK/tmp" exec "$SEED_BIN" "$SET" "$SCALE" "$WORK/seed"; }
# bash unsets SEED_PID when the coprocess ends: keep our own copy for the clean-up.
# shellcheck disable=SC2153 # set by coproc
SEED_CHILD=$SEED_PID
read -r -t 1800 -u "${SEED[0]}" word SRC_HOST SRC_STORAGE || die "the seeding program failed"
[[ $word == ready ]] || die "unexpected answer from the seeding program: $word"
export SRC_HOST SRC_STORAGE
seed_secs=$(awk -v a="$seed_started" -v b="$(date +%s%N)" 'BEGIN{printf "%.1f", (b-a)/1e9}')
# shellcheck disable=SC1091
source "$SEED_DIR/summary.env"

reg_start() { # NAME -> REG_HOST REG_STORAGE
  local word name
  echo "start $1" >&"${SEED[1]}"
  read -r -t 120 -u "${SEED[0]}" word name REG_HOST REG_STORAGE || die "cannot start registry $1"
  [[ $word == started ]] || die "cannot start registry $1: $word $name"
}
reg_stop() {
  local word name
  echo "stop $1" >&"${SEED[1]}"
  read -r -t 120 -u "${SEED[0]}" word name || die "cannot stop registry $1"
}

# The airgap spec: every image, the source reached over plain HTTP.
SPEC=$WORK/airgap.yaml
{
  echo "images:"
  while IFS=$'\t' read -r _ repo tag _ _; do
    echo "- image: $SRC_HOST/$repo:$tag"
  done <"$SEED_DIR/images.tsv"
  echo "registries:"
  echo "  $SRC_HOST: http://$SRC_HOST"
} >"$SPEC"
export SPEC

# ---------------------------------------------------------------------------------------------
# The workflows, each run under /usr/bin/time -v by `measure` (exported: they run in bash -c).

skopeo_pack() {
  local layout=$RUNDIR/skopeo-layout
  mkdir -p "$layout"
  while IFS=$'\t' read -r name repo tag _ _; do
    skopeo copy -q --policy "$POLICY" --all --preserve-digests --src-tls-verify=false \
      "docker://$SRC_HOST/$repo:$tag" "oci:$layout:$name" </dev/null
  done <"$SEED_DIR/images.tsv"
  du -sb "$layout" | cut -f1 >"$RUNDIR/skopeo-layout.bytes"
  tar -C "$layout" -cf - . | zstd -T0 -3 -q -o "$RUNDIR/skopeo.tar.zst"
}

# $1: re-load (anything) or first load (empty): the same steps either way.
skopeo_load() {
  local dir=$RUNDIR/skopeo-extract
  rm -rf "$dir"
  mkdir -p "$dir"
  zstd -dc "$RUNDIR/skopeo.tar.zst" | tar -C "$dir" -xf -
  du -sb "$dir" | cut -f1 >"$RUNDIR/skopeo-extract.bytes"
  while IFS=$'\t' read -r name repo tag _ _; do
    skopeo copy -q --policy "$POLICY" --all --preserve-digests --dest-tls-verify=false \
      "oci:$dir:$name" "docker://$TGT/$repo:$tag" </dev/null
  done <"$SEED_DIR/images.tsv"
}

# The same workflows with WORKERS skopeo processes at once, each on its share of the images
# (dealt round-robin, so each worker gets small and big ones alike) and its own OCI layout
# DIR/wN: a careful user's script. A worker that fails fails the step.
# $1: what each worker runs per image (NAME REPO TAG LAYOUT); $2: the parent of the layouts.
skopeo_workers() {
  local per=$1 dir=$2 w pids=() failed=0
  for ((w = 0; w < WORKERS; w++)); do
    (
      set -euo pipefail
      mkdir -p "$dir/w$w"
      awk -F'\t' -v n="$WORKERS" -v w="$w" '(NR - 1) % n == w' "$SEED_DIR/images.tsv" |
        while IFS=$'\t' read -r name repo tag _ _; do
          "$per" "$name" "$repo" "$tag" "$dir/w$w"
        done
    ) &
    pids+=($!)
  done
  for w in "${pids[@]}"; do
    wait "$w" || failed=1
  done
  return "$failed"
}
skopeo_pull_one() {
  skopeo copy -q --policy "$POLICY" --all --preserve-digests --src-tls-verify=false \
    "docker://$SRC_HOST/$2:$3" "oci:$4:$1" </dev/null
}
skopeo_push_one() {
  skopeo copy -q --policy "$POLICY" --all --preserve-digests --dest-tls-verify=false \
    "oci:$4:$1" "docker://$TGT/$2:$3" </dev/null
}
skopeo4_pack() {
  local layout=$RUNDIR/skopeo4-layout
  mkdir -p "$layout"
  skopeo_workers skopeo_pull_one "$layout"
  du -sb "$layout" | cut -f1 >"$RUNDIR/skopeo4-layout.bytes"
  tar -C "$layout" -cf - . | zstd -T0 -3 -q -o "$RUNDIR/skopeo4.tar.zst"
}
skopeo4_load() {
  local dir=$RUNDIR/skopeo4-extract
  rm -rf "$dir"
  mkdir -p "$dir"
  zstd -dc "$RUNDIR/skopeo4.tar.zst" | tar -C "$dir" -xf -
  du -sb "$dir" | cut -f1 >"$RUNDIR/skopeo4-extract.bytes"
  skopeo_workers skopeo_push_one "$dir"
}

# airgap runs in its own empty directory, with its own TMPDIR, and writes the bundle into
# a directory of its own: what else appears there during a step is its extra disk.
# BENCH_PERF=1: airgap under perf record (call graphs), one profile per step and run.
airgap_cmd() { # STEP ARGS...
  local step=$1
  shift
  if [[ ${BENCH_PERF:-0} == 1 ]]; then
    perf record -q -F 499 -g -o "$WORK/logs/perf-$step-run$RUN.data" -- "$AIRGAP" "$@"
  else
    "$AIRGAP" "$@"
  fi
}

airgap_pack() {
  cd "$RUNDIR/airgap-cwd"
  TMPDIR=$RUNDIR/airgap-tmp airgap_cmd pack pack "$SPEC" -o "$RUNDIR/airgap-out/bundle.tar.zst" -q </dev/null
}

airgap_load() {
  cd "$RUNDIR/airgap-cwd"
  TMPDIR=$RUNDIR/airgap-tmp airgap_cmd "load-$1" load "$RUNDIR/airgap-out/bundle.tar.zst" --registry "$TGT" \
    --plain-http -q --image-map "$RUNDIR/airgap-cwd/images-$1.json" </dev/null
}

# Splits blobs.tsv into PAR chunks (largest first, dealt round-robin) for the curl limits.
split_blobs() {
  sort -t$'\t' -k3,3nr "$SEED_DIR/blobs.tsv" |
    awk -F'\t' -v n="$PAR" -v d="$RUNDIR/chunks" '{ print > (d "/" (NR - 1) % n ".tsv") }'
}

# $1: the host to GET from (default: the source registry; the serve row uses airgap serve).
limit_get() {
  local f host=${1:-$SRC_HOST}
  for f in "$RUNDIR"/chunks/*.tsv; do
    awk -F'\t' -v h="$host" \
      '{ printf "url = \"http://%s/v2/%s/blobs/%s\"\noutput = \"/dev/null\"\n", h, $1, $2 }' \
      "$f" >"$f.get"
    curl -sS --noproxy '*' -K "$f.get" -w '%{http_code} %{size_download}\n' >"$f.got" &
  done
  wait
  cat "$RUNDIR"/chunks/*.got | awk -v want="$SEED_BLOB_BYTES" -v n="$SEED_BLOBS" '
    $1 != 200 { bad++ } { sum += $2; c++ }
    END { if (bad || c != n || sum != want) { print "GET limit: " bad+0 " errors, " c " blobs, " sum " bytes, want " n " and " want > "/dev/stderr"; exit 1 } }'
}

limit_zstd() {
  cut -f4 "$SEED_DIR/blobs.tsv" | xargs cat | zstd -T0 -3 -q -o "$RUNDIR/limit.zst"
}

limit_unzstd() {
  zstd -dc "$RUNDIR/airgap-out/bundle.tar.zst" >/dev/null
}

# Every blob: POST an upload session, then one monolithic PUT of the file (4 curls at once,
# each going through its share of the blobs; the sessions are opened first, in one curl per
# share, so no extra process is spawned per blob).
limit_upload() {
  local f
  for f in "$RUNDIR"/chunks/*.tsv; do
    (
      set -euo pipefail
      awk -F'\t' -v h="$TGT" \
        '{ printf "url = \"http://%s/v2/%s/blobs/uploads/\"\noutput = \"/dev/null\"\n", h, $1 }' \
        "$f" >"$f.post"
      curl -sS --noproxy '*' -X POST -H 'Content-Length: 0' -K "$f.post" \
        -w '%{http_code} %header{location}\n' >"$f.loc"
      paste "$f" "$f.loc" | awk -F'\t' -v h="$TGT" '
        { split($5, a, " "); code = a[1]; loc = a[2]
          if (code != 202 || loc == "") { print "POST failed: " $5 > "/dev/stderr"; exit 1 }
          if (loc ~ /^\//) loc = "http://" h loc
          sep = (loc ~ /\?/) ? "&" : "?"
          printf "url = \"%s%sdigest=%s\"\nupload-file = \"%s\"\noutput = \"/dev/null\"\n", loc, sep, $2, $4 }' >"$f.put"
      curl -sS --noproxy '*' -H 'Content-Type: application/octet-stream' -H 'Expect:' \
        -K "$f.put" -w '%{http_code} %{size_upload}\n' >"$f.put-out"
    ) &
  done
  wait
  cat "$RUNDIR"/chunks/*.put-out | awk -v want="$SEED_BLOB_BYTES" -v n="$SEED_BLOBS" '
    $1 != 201 { bad++ } { sum += $2; c++ }
    END { if (bad || c != n || sum != want) { print "upload limit: " bad+0 " errors, " c " blobs, " sum " bytes, want " n " and " want > "/dev/stderr"; exit 1 } }'
}

# One manifest: HOST REF WANT -> "ok REF" or "BAD REF …" (the bytes go through a file: a
# command substitution would drop trailing newlines and change the digest).
check_one() {
  local f got
  f=$(mktemp "$WORK/tmp/check.XXXXXX")
  if skopeo inspect --raw --tls-verify=false "docker://$1/$2" >"$f" 2>"$f.err"; then
    got=sha256:$(sha256sum <"$f" | cut -d' ' -f1)
  else
    got="error: $(tr '\n' ' ' <"$f.err")"
  fi
  rm -f "$f" "$f.err"
  if [[ $got == "$3" ]]; then
    echo "ok $2"
  else
    echo "BAD $2 want $3 got $got"
  fi
}

export -f airgap_cmd skopeo_pack skopeo_load skopeo_workers skopeo_pull_one skopeo_push_one \
  skopeo4_pack skopeo4_load airgap_pack airgap_load limit_get limit_zstd limit_unzstd \
  limit_upload check_one
export SEED_BLOB_BYTES SEED_BLOBS

# Checks every manifest of the set at registry HOST; records LABEL's result.
CHECK_FAILED=0
declare -A CHECK_OK CHECK_ALL
check_target() { # HOST LABEL
  local out=$WORK/logs/check-$2-run$RUN.txt ok all
  awk -F'\t' -v h="$1" '{ print h, $1, $2 }' "$SEED_DIR/checks.tsv" |
    xargs -P "$PAR" -n 3 bash -c 'check_one "$@"' _ >"$out"
  ok=$(grep -c '^ok ' "$out" || true)
  all=$(wc -l <"$SEED_DIR/checks.tsv")
  CHECK_OK[$2]=$((${CHECK_OK[$2]:-0} + ok))
  CHECK_ALL[$2]=$((${CHECK_ALL[$2]:-0} + all))
  if [[ $ok -ne $all ]]; then
    CHECK_FAILED=1
    echo "    DIGEST MISMATCH at $2 ($((all - ok)) of $all):" >&2
    grep -v '^ok ' "$out" | head -5 | sed 's/^/      /' >&2
  else
    echo "    digests: $ok/$all manifests at $2 match the source"
  fi
}

# Peak bytes in airgap's TMPDIR, working directory and output directory (the bundle and its
# partial file excluded), sampled every 0.2 s while a step runs.
SAMPLER_PID=
sampler_start() {
  local out=$1
  echo 0 >"$out"
  (
    max=0
    while :; do
      s=$(du -sbc --exclude='bundle.tar.zst' --exclude='.bundle.tar.zst.partial-*' \
        "$RUNDIR/airgap-tmp" "$RUNDIR/airgap-cwd" "$RUNDIR/airgap-out" 2>/dev/null | tail -1 | cut -f1)
      s=${s:-0}
      if ((s > max)); then
        max=$s
        echo "$max" >"$out"
      fi
      sleep 0.2
    done
  ) &
  SAMPLER_PID=$!
}
sampler_stop() {
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=
}

storage_bytes() { du -sb "$1" | cut -f1; }

# reg_cpu HOST:PORT: CPU seconds (user + system) used so far by the process listening there
# (a registry), or "-" when it cannot be found.
reg_cpu() {
  local pid
  [[ -n $1 ]] || { echo -; return; }
  pid=$(ss -Hltnp "sport = :${1##*:}" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  [[ -n $pid && -r /proc/$pid/stat ]] || { echo -; return; }
  awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$pid/stat"
}

# measure ROW FUNCTION [ARGS]: runs it under /usr/bin/time -v; sets WALL (s), RSS (KiB),
# WRITTEN (bytes the process tree wrote to the file system), CPU (its user + system seconds)
# and REGCPU (CPU seconds of the registry at $CPU_OF during the step, or "-").
measure() {
  local row=$1
  shift
  local slug=${row//[^a-zA-Z0-9]/-}
  local log=$WORK/logs/$slug-run$RUN.log tf=$WORK/logs/time.txt t0 t1 c0 c1
  printf '  %-24s' "$row"
  # No step pays for the write-back of what an earlier one left dirty (`sync_after` measures it).
  sync
  cut -d' ' -f1 /proc/loadavg >>"$WORK/logs/loadavg"
  c0=$(reg_cpu "${CPU_OF:-}")
  t0=$(date +%s%N)
  if ! /usr/bin/time -v -o "$tf" bash -c 'set -euo pipefail; "$@"' _ "$@" >"$log" 2>&1; then
    echo " FAILED"
    tail -20 "$log" >&2
    cat "$tf" >&2 2>/dev/null || true
    die "$row failed (log: $log; BENCH_KEEP=1 keeps it)"
  fi
  t1=$(date +%s%N)
  c1=$(reg_cpu "${CPU_OF:-}")
  REGCPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.2f", b - a }')
  CPU=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$tf")
  WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  RSS=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf")
  WRITTEN=$(awk -F': ' '/File system outputs/ { printf "%.0f", $2 * 512 }' "$tf")
  printf ' %8.2f s  %7.1f MiB peak RSS\n' "$WALL" "$(awk -v k="$RSS" 'BEGIN { print k / 1024 }')"
}

# record ROW BYTES EXTRA: one line of the raw results (EXTRA "-" when not applicable).
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$RUN" "$1" "$WALL" "$RSS" "$2" "$WRITTEN" "$3" \
    "$CPU" "$REGCPU" >>"$RAW"
}
# sync_after ROW: how long the write-back a step left behind takes (`sync`), as row "ROW: sync".
# airgap pack makes its bundle durable inside its own time; the skopeo workflow never syncs.
sync_after() {
  local t0 t1
  t0=$(date +%s%N)
  sync
  t1=$(date +%s%N)
  printf '%s\t%s: sync\t%s\t-\t-\t-\t-\t-\t-\n' "$RUN" "$1" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" >>"$RAW"
}
pos() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; print (d > 0 ? d : 0) }'; }
maxof() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }

SERVE_PID=
serve_start() {
  # Created here: the loop below may read it before the background job's redirection has.
  : >"$RUNDIR/serve.out"
  "$AIRGAP" serve "$RUNDIR/airgap-out/bundle.tar.zst" --listen 127.0.0.1:0 -q \
    >"$RUNDIR/serve.out" 2>"$WORK/logs/serve-run$RUN.err" &
  SERVE_PID=$!
  for _ in $(seq 600); do
    SERVE_HOST=$(awk '/^listening on / { print $3; exit }' "$RUNDIR/serve.out")
    [[ -n $SERVE_HOST ]] && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$WORK/logs/serve-run$RUN.err" >&2
  die "airgap serve did not start"
}
serve_stop() {
  kill "$SERVE_PID" 2>/dev/null || true
  wait "$SERVE_PID" 2>/dev/null || true
  SERVE_PID=
}

DELTA_LINE="delta: not measured"
measure_delta() {
  local v1spec=$WORK/airgap-v1.yaml last
  last=$(tail -n 1 "$SEED_DIR/images.tsv" | cut -f2,3 --output-delimiter=:)
  grep -v -- "- image: $SRC_HOST/$last\$" "$SPEC" >"$v1spec"
  "$AIRGAP" pack "$v1spec" -o "$RUNDIR/v1.tar.zst" -q </dev/null
  "$AIRGAP" pack "$SPEC" -o "$RUNDIR/delta.tar.zst" --base "$RUNDIR/v1.tar.zst" -q </dev/null
  DELTA_LINE=$(printf 'delta: v2 = v1 + %s: full v2 bundle %s MiB, v1 %s MiB, delta --base v1 %s MiB (%s of the full bundle)' \
    "$last" "$(mib "$(stat -c %s "$RUNDIR/airgap-out/bundle.tar.zst")")" \
    "$(mib "$(stat -c %s "$RUNDIR/v1.tar.zst")")" "$(mib "$(stat -c %s "$RUNDIR/delta.tar.zst")")" \
    "$(ratio "$(stat -c %s "$RUNDIR/delta.tar.zst")" "$(stat -c %s "$RUNDIR/airgap-out/bundle.tar.zst")")")
  echo "    $DELTA_LINE"
  rm -f "$RUNDIR/v1.tar.zst" "$RUNDIR/delta.tar.zst"
}
mib() { awk -v b="$1" 'BEGIN { if (b == "-") print "-"; else printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

# ---------------------------------------------------------------------------------------------
# What the machine is doing

# The load average, and over one second: how busy the CPUs were and the processes using more
# than 5% of a CPU (at the start and at the end these are other users' processes, plus the
# source registry).
machine_state() {
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg); over 1 s:"
  top -b -n 2 -d 1 -w 200 -o %CPU | awk '
    /^top -/ { n++ }
    n == 2 && /^%Cpu/ { printf "    CPUs %.0f%% busy (%s user, %s system)\n", 100 - $8, $2, $4 }
    n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 > 5 { printf "    %5.1f%% %s\n", $9, $12 }' | head -7
}
STATE_BEFORE=$(machine_state)

echo "    $SEED_IMAGES images ($SEED_MULTI multi-platform, $SEED_MANIFESTS manifests), $SEED_BLOBS blobs, $SEED_BLOB_BYTES bytes, seeded in ${seed_secs}s"
echo "==> checking the source"
RUN=0
check_target "$SRC_HOST" source

printf 'run\trow\twall_s\trss_kib\tbytes\twritten\textra_disk\tcpu_s\treg_cpu_s\n' >"$RAW"

for RUN in $(seq "$RUNS"); do
  echo "==> run $RUN of $RUNS"
  export RUN RUNDIR=$WORK/run$RUN
  rm -rf "$RUNDIR"
  mkdir -p "$RUNDIR/airgap-cwd" "$RUNDIR/airgap-tmp" "$RUNDIR/airgap-out" "$RUNDIR/chunks"

  # Pack (and the GET limit): the source registry's CPU is measured.
  CPU_OF=$SRC_HOST
  measure "skopeo pack" skopeo_pack
  record "skopeo pack" "$(stat -c %s "$RUNDIR/skopeo.tar.zst")" "$(cat "$RUNDIR/skopeo-layout.bytes")"
  # The OCI directory is scratch: deleted first, so only the bundle's write-back is timed.
  rm -rf "$RUNDIR/skopeo-layout"
  sync_after "skopeo pack"

  measure "skopeo x4 pack" skopeo4_pack
  record "skopeo x4 pack" "$(stat -c %s "$RUNDIR/skopeo4.tar.zst")" "$(cat "$RUNDIR/skopeo4-layout.bytes")"
  rm -rf "$RUNDIR/skopeo4-layout"
  sync_after "skopeo x4 pack"

  sampler_start "$RUNDIR/airgap.peak"
  measure "airgap pack" airgap_pack
  sync_after "airgap pack"
  sampler_stop
  bundle=$(stat -c %s "$RUNDIR/airgap-out/bundle.tar.zst")
  record "airgap pack" "$bundle" "$(cat "$RUNDIR/airgap.peak")"

  split_blobs
  measure "limit: GET blobs" limit_get
  record "limit: GET blobs" "$SEED_BLOB_BYTES" -

  # The same GETs answered by `airgap serve` from the bundle (replace mode keeps the
  # repository names); RSS is the server's peak (VmHWM), not curl's, reg CPU the server's.
  # pack wrote the bundle past the page cache, so the first pass reads it from the disk (a
  # stick's case); the second, on the same server, from memory, as the registry's GETs do.
  serve_start
  CPU_OF=$SERVE_HOST
  measure "airgap serve: GET" limit_get "$SERVE_HOST"
  RSS=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVE_PID/status")
  record "airgap serve: GET" "$SEED_BLOB_BYTES" -
  measure "airgap serve: GET again" limit_get "$SERVE_HOST"
  RSS=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVE_PID/status")
  record "airgap serve: GET again" "$SEED_BLOB_BYTES" -
  serve_stop

  # A delta: v1 = every image but the last, v2 = all of them, packed --base v1.
  if [[ $RUN == 1 ]]; then
    measure_delta
  fi
  CPU_OF=
  measure "limit: zstd -3" limit_zstd
  record "limit: zstd -3" "$(stat -c %s "$RUNDIR/limit.zst")" -
  rm -f "$RUNDIR/limit.zst"

  # Load, each workflow into its own fresh registry.
  reg_start skopeo-target
  SKOPEO_TGT=$REG_HOST
  SKOPEO_STORAGE=$REG_STORAGE
  export TGT=$SKOPEO_TGT
  CPU_OF=$TGT
  measure "skopeo load" skopeo_load
  record "skopeo load" "$(storage_bytes "$SKOPEO_STORAGE")" "$(cat "$RUNDIR/skopeo-extract.bytes")"
  rm -rf "$RUNDIR/skopeo-extract"
  check_target "$SKOPEO_TGT" skopeo-target

  reg_start skopeo4-target
  SKOPEO4_TGT=$REG_HOST
  SKOPEO4_STORAGE=$REG_STORAGE
  export TGT=$SKOPEO4_TGT
  CPU_OF=$TGT
  measure "skopeo x4 load" skopeo4_load
  record "skopeo x4 load" "$(storage_bytes "$SKOPEO4_STORAGE")" "$(cat "$RUNDIR/skopeo4-extract.bytes")"
  rm -rf "$RUNDIR/skopeo4-extract"
  check_target "$SKOPEO4_TGT" skopeo4-target

  reg_start airgap-target
  AIRGAP_TGT=$REG_HOST
  AIRGAP_STORAGE=$REG_STORAGE
  export TGT=$AIRGAP_TGT
  CPU_OF=$TGT
  sampler_start "$RUNDIR/airgap.peak"
  measure "airgap load" airgap_load first
  sampler_stop
  map=$(stat -c %s "$RUNDIR/airgap-cwd/images-first.json")
  record "airgap load" "$(storage_bytes "$AIRGAP_STORAGE")" \
    "$(maxof "$(cat "$RUNDIR/airgap.peak")" "$(pos "$WRITTEN" "$map")")"
  check_target "$AIRGAP_TGT" airgap-target

  # Re-loads of the same bundles into the same registries: bytes = what the storage grew by.
  export TGT=$SKOPEO_TGT
  CPU_OF=$TGT
  before=$(storage_bytes "$SKOPEO_STORAGE")
  measure "skopeo re-load" skopeo_load again
  record "skopeo re-load" "$(pos "$(storage_bytes "$SKOPEO_STORAGE")" "$before")" "$(cat "$RUNDIR/skopeo-extract.bytes")"
  rm -rf "$RUNDIR/skopeo-extract"
  check_target "$SKOPEO_TGT" skopeo-target

  export TGT=$SKOPEO4_TGT
  CPU_OF=$TGT
  before=$(storage_bytes "$SKOPEO4_STORAGE")
  measure "skopeo x4 re-load" skopeo4_load again
  record "skopeo x4 re-load" "$(pos "$(storage_bytes "$SKOPEO4_STORAGE")" "$before")" "$(cat "$RUNDIR/skopeo4-extract.bytes")"
  rm -rf "$RUNDIR/skopeo4-extract"
  check_target "$SKOPEO4_TGT" skopeo4-target

  export TGT=$AIRGAP_TGT
  CPU_OF=$TGT
  before=$(storage_bytes "$AIRGAP_STORAGE")
  sampler_start "$RUNDIR/airgap.peak"
  measure "airgap re-load" airgap_load again
  sampler_stop
  map=$(stat -c %s "$RUNDIR/airgap-cwd/images-again.json")
  record "airgap re-load" "$(pos "$(storage_bytes "$AIRGAP_STORAGE")" "$before")" \
    "$(maxof "$(cat "$RUNDIR/airgap.peak")" "$(pos "$WRITTEN" "$map")")"
  check_target "$AIRGAP_TGT" airgap-target
  reg_stop skopeo-target
  reg_stop skopeo4-target
  reg_stop airgap-target

  # The raw limits of loading.
  CPU_OF=
  measure "limit: zstd -d" limit_unzstd
  record "limit: zstd -d" "$bundle" -
  reg_start upload-target
  export TGT=$REG_HOST
  CPU_OF=$TGT
  measure "limit: upload blobs" limit_upload
  record "limit: upload blobs" "$(storage_bytes "$REG_STORAGE")" -
  reg_stop upload-target

  rm -rf "$RUNDIR"
done
STATE_AFTER=$(machine_state)

# ---------------------------------------------------------------------------------------------
# The report: medians over the runs.

ROWS=("skopeo pack" "skopeo x4 pack" "airgap pack" "limit: GET blobs" "airgap serve: GET" "airgap serve: GET again"
  "limit: zstd -3"
  "skopeo load" "skopeo x4 load" "airgap load" "skopeo re-load" "skopeo x4 re-load" "airgap re-load"
  "limit: zstd -d" "limit: upload blobs")
declare -A NOTE=(
  ["skopeo pack"]="copy x$SEED_IMAGES to an OCI dir, then tar | zstd -T0 -3"
  ["skopeo x4 pack"]="the same, $WORKERS skopeo at once (one OCI dir each), then tar | zstd -T0 -3"
  ["airgap pack"]="airgap pack (concurrency 8, zstd -3)"
  ["limit: GET blobs"]="every blob, $PAR curls, to /dev/null"
  ["airgap serve: GET"]="the same GETs from airgap serve, bundle read from disk (RSS, reg CPU: the server)"
  ["airgap serve: GET again"]="the same again, same server, bundle in the page cache"
  ["limit: zstd -3"]="zstd -T0 -3 of the same bytes, to a file"
  ["skopeo load"]="zstd -dc | tar -x, then copy x$SEED_IMAGES"
  ["skopeo x4 load"]="zstd -dc | tar -x, then $WORKERS skopeo at once (one OCI dir each)"
  ["airgap load"]="airgap load (concurrency 8), fresh registry"
  ["skopeo re-load"]="the same again, same registry"
  ["skopeo x4 re-load"]="the same again, same registry"
  ["airgap re-load"]="the same again, same registry"
  ["limit: zstd -d"]="zstd -dc of the airgap bundle to /dev/null"
  ["limit: upload blobs"]="every blob POST+PUT, $PAR curls, fresh registry"
)
# median ROW COLUMN (3 wall_s, 4 rss_kib, 5 bytes, 6 written, 7 extra_disk, 8 cpu_s, 9 reg_cpu_s)
median() {
  awk -F'\t' -v r="$1" -v c="$2" 'NR > 1 && $2 == r { print $c }' "$RAW" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0 || v[1] == "-") print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A MED_WALL
{
  echo "airgap benchmark, set '$SET' (BENCH_SCALE=$SCALE), median of $RUNS run(s), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "data: $SEED_IMAGES images ($SEED_MULTI multi-platform OCI indexes, $SEED_MANIFESTS manifests), $SEED_BLOBS blobs, $(mib "$SEED_BLOB_BYTES") MiB unique, incompressible layers, one shared base layer"
  echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); airgap $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo '+local changes'); $(skopeo --version); $(docker-registry --version 2>/dev/null | awk '{ print $1, $3 }')"
  echo "before: $STATE_BEFORE"
  echo "after:  $STATE_AFTER"
  echo "1-minute load average at the start of each step: $(sort -g "$WORK/logs/loadavg" | sed -n '1p;$p' | paste -sd- -)"
  echo
  printf '%-23s %9s %10s %11s %11s %11s %7s %7s  %s\n' step "wall s" "RSS MiB" "data MiB" "wrote MiB" "extra MiB" "CPU s" "reg CPU" "what"
  printf '%-23s %9s %10s %11s %11s %11s %7s %7s  %s\n' "-----------------------" "---------" "----------" "-----------" "-----------" "-----------" "-------" "-------" "----"
  declare -A MED_CPU MED_REG
  for row in "${ROWS[@]}"; do
    w=$(median "$row" 3)
    MED_WALL[$row]=$w
    MED_CPU[$row]=$(median "$row" 8)
    MED_REG[$row]=$(median "$row" 9)
    printf '%-23s %9.2f %10s %11s %11s %11s %7s %7s  %s\n' "$row" "$w" "$(mib "$(awk -v k="$(median "$row" 4)" 'BEGIN { print k * 1024 }')")" \
      "$(mib "$(median "$row" 5)")" "$(mib "$(median "$row" 6)")" "$(mib "$(median "$row" 7)")" \
      "${MED_CPU[$row]}" "${MED_REG[$row]}" "${NOTE[$row]}"
  done
  echo
  echo "data: pack = the bundle written; load = the target registry's storage after; re-load = what it grew by;"
  echo "      limits = bytes moved (zstd -3: bytes out). wrote = bytes the step's processes wrote to the file"
  echo "      system (GNU time's 'File system outputs' x 512: every dirtied page, even of a file deleted later)."
  echo "extra: disk used besides the bundle and the registries: skopeo's OCI directory (pack) and extracted"
  echo "      directory (load); airgap: peak size of its TMPDIR, working dir and output dir (bundle excluded),"
  echo "      sampled every 0.2 s; for load also at least the bytes it wrote besides the image map."
  echo "RSS: the largest single process of the step (GNU time -v). CPU s: user + system seconds of the step's"
  echo "      processes; reg CPU: those of the registry it reads from (pack, GET limit) or writes to (loads, upload limit)."
  echo
  limit_pack=$(awk -v a="${MED_WALL["limit: GET blobs"]}" -v b="${MED_WALL["limit: zstd -3"]}" 'BEGIN { print a + b }')
  limit_pack_max=$(maxof "${MED_WALL["limit: GET blobs"]}" "${MED_WALL["limit: zstd -3"]}")
  printf 'airgap/skopeo   pack %s   load %s   re-load %s\n' \
    "$(ratio "${MED_WALL["airgap pack"]}" "${MED_WALL["skopeo pack"]}")" \
    "$(ratio "${MED_WALL["airgap load"]}" "${MED_WALL["skopeo load"]}")" \
    "$(ratio "${MED_WALL["airgap re-load"]}" "${MED_WALL["skopeo re-load"]}")"
  printf '%-10s %9s %12s\n' ratio "vs skopeo" "vs skopeo x$WORKERS"
  for step in pack load re-load; do
    printf '%-10s %9s %12s\n' "$step" \
      "$(ratio "${MED_WALL["airgap $step"]}" "${MED_WALL["skopeo $step"]}")" \
      "$(ratio "${MED_WALL["airgap $step"]}" "${MED_WALL["skopeo x4 $step"]}")"
  done
  printf 'airgap/limit    pack %s (vs GET + zstd, %.2f s; %s vs the slower of the two)   load %s (vs upload, %.2f s)\n' \
    "$(ratio "${MED_WALL["airgap pack"]}" "$limit_pack")" "$limit_pack" \
    "$(ratio "${MED_WALL["airgap pack"]}" "$limit_pack_max")" \
    "$(ratio "${MED_WALL["airgap load"]}" "${MED_WALL["limit: upload blobs"]}")" "${MED_WALL["limit: upload blobs"]}"
  mibps() { awk -v b="$SEED_BLOB_BYTES" -v t="${MED_WALL[$1]}" 'BEGIN { printf "%.0f", b / 1048576 / t }'; }
  printf 'serve           %s MiB/s from airgap serve (bundle from disk), %s MiB/s again (page cache) vs %s MiB/s from the registry (GET limit): %s, %s\n' \
    "$(mibps "airgap serve: GET")" "$(mibps "airgap serve: GET again")" "$(mibps "limit: GET blobs")" \
    "$(ratio "${MED_WALL["limit: GET blobs"]}" "${MED_WALL["airgap serve: GET"]}")x" \
    "$(ratio "${MED_WALL["limit: GET blobs"]}" "${MED_WALL["airgap serve: GET again"]}")x"
  floor() { # ROW: the step's CPU and its registry's, spread over every CPU: no schedule is faster
    awk -v a="${MED_CPU[$1]}" -v b="${MED_REG[$1]}" -v n="$(nproc)" 'BEGIN { if (b == "-") print "-"; else printf "%.2f", (a + b) / n }'
  }
  printf 'CPU floor       (CPU s + reg CPU) / %s CPUs: airgap pack %s s, airgap load %s s; skopeo pack %s s, skopeo load %s s; skopeo x%s pack %s s, load %s s\n' \
    "$(nproc)" "$(floor "airgap pack")" "$(floor "airgap load")" "$(floor "skopeo pack")" "$(floor "skopeo load")" \
    "$WORKERS" "$(floor "skopeo x4 pack")" "$(floor "skopeo x4 load")"
  durable_skopeo=$(awk -v a="${MED_WALL["skopeo pack"]}" -v b="$(median "skopeo pack: sync" 3)" 'BEGIN { print a + b }')
  durable_airgap=$(awk -v a="${MED_WALL["airgap pack"]}" -v b="$(median "airgap pack: sync" 3)" 'BEGIN { print a + b }')
  durable_skopeo4=$(awk -v a="${MED_WALL["skopeo x4 pack"]}" -v b="$(median "skopeo x4 pack: sync" 3)" 'BEGIN { print a + b }')
  printf 'durable         pack, then sync: skopeo %.2f s, skopeo x%s %.2f s, airgap %.2f s: %s, %s (airgap syncs its bundle within its own time)\n' \
    "$durable_skopeo" "$WORKERS" "$durable_skopeo4" "$durable_airgap" "$(ratio "$durable_airgap" "$durable_skopeo")" \
    "$(ratio "$durable_airgap" "$durable_skopeo4")"
  echo "$DELTA_LINE"
  for t in source skopeo-target skopeo4-target airgap-target; do
    printf 'digests %-14s %s of %s manifest checks match the source\n' \
      "$t" "${CHECK_OK[$t]:-0}" "${CHECK_ALL[$t]:-0}"
  done
  echo "digest checks: skopeo inspect --raw | sha256sum of every image by tag and every index child by digest,"
  echo "      at the source once and at each target after every load and re-load."
  echo "skopeo flags: copy --all --preserve-digests (all images are OCI-typed: skopeo cannot keep a"
  echo "      Docker manifest list's digest in an OCI layout); plain HTTP via --src/dest-tls-verify=false."
} >"$REPORT"
if [[ ${BENCH_PERF:-0} == 1 ]]; then
  for step in pack load-first; do
    f=$WORK/logs/perf-$step-run1.data
    [[ -f $f ]] || continue
    perf report -i "$f" --stdio --no-children --sort dso,symbol --percent-limit 1.5 2>/dev/null |
      grep -v '^$' | head -80 >"$OUT/$SET-perf-$step.txt" || true
    echo "profile of airgap $step: ${OUT#"$ROOT"/}/$SET-perf-$step.txt"
  done
fi
echo
cat "$REPORT"
echo
echo "(written to ${REPORT#"$ROOT"/}; every run's figures in ${RAW#"$ROOT"/})"
if [[ $CHECK_FAILED -ne 0 ]]; then
  echo "bench: some digests at a target do not match the source" >&2
  exit 1
fi
