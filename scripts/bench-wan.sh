#!/usr/bin/env bash
# The `wan` profile of scripts/bench.sh: pack over a slow link. For each set (large, many),
# the source registry is put behind the harness proxy shaped as a WAN link (user space, no
# netem: tests/support/shaping.rs, started by examples/bench_seed.rs), and on the same data in
# one invocation:
#   skopeo pack   skopeo copy --all --preserve-digests docker://PROXY/… oci:DIR:NAME per image,
#                 then tar | zstd -T0 -3 (the pack half of the skopeo workflow)
#   airgap pack   airgap pack SPEC -o bundle.tar.zst, the spec's registry mirrored to the proxy
#   limit: GET    every blob GET through the link with BENCH_PARALLEL curls (measured)
#   bandwidth     unique blob bytes / link rate (computed: no schedule is faster)
#
#   scripts/bench.sh wan            both sets
#   scripts/bench.sh wan many       one set
# Environment: WAN_RTT_MS (50), WAN_MBIT (200, per direction), BENCH_SCALE (1), BENCH_RUNS (1),
# BENCH_PARALLEL (4). Report: target/bench/wan.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RTT=${WAN_RTT_MS:-50}
MBIT=${WAN_MBIT:-200}
SCALE=${BENCH_SCALE:-1}
RUNS=${BENCH_RUNS:-1}
PAR=${BENCH_PARALLEL:-4}
SETS=("${@:-large}")
[[ $# -eq 0 ]] && SETS=(large many)
for s in "${SETS[@]}"; do
  [[ $s == large || $s == many ]] || { echo "bench wan: unknown set $s (large, many)" >&2; exit 2; }
done
[[ $RTT =~ ^[0-9]+$ && $MBIT =~ ^[1-9][0-9]*$ ]] || { echo "WAN_RTT_MS and WAN_MBIT must be whole numbers" >&2; exit 2; }
RATE_BYTES=$((MBIT * 1000000 / 8))

unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy REGISTRY_AUTH_FILE DOCKER_CONFIG
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

bash scripts/install-deps.sh >/dev/null
cargo build --profile profiling --bin airgap --example bench_seed
AIRGAP=$ROOT/target/profiling/airgap
SEED_BIN=$ROOT/target/profiling/examples/bench_seed
OUT=$ROOT/target/bench
WORK=$OUT/work-wan
REPORT=$OUT/wan.txt
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK"
POLICY=$WORK/policy.json
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$POLICY"

die() { echo "bench wan: $*" >&2; exit 1; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

# timed LABEL CMD...: runs CMD, appends "LABEL SECONDS" to $TIMES, echoes the time.
timed() {
  local label=$1 t0 t1
  shift
  sync
  t0=$(date +%s%N)
  "$@" >"$WORK/$SET-${label// /-}.log" 2>&1 || { tail -20 "$WORK/$SET-${label// /-}.log" >&2; die "$SET: $label failed"; }
  t1=$(date +%s%N)
  printf '%s\t%s\n' "$label" "$(secs "$t0" "$t1")" >>"$TIMES"
  printf '    %-14s %8s s\n' "$label" "$(secs "$t0" "$t1")"
}

skopeo_pack() {
  local layout=$RUN_DIR/skopeo-layout
  rm -rf "$layout"
  mkdir -p "$layout"
  while IFS=$'\t' read -r name repo tag _ _; do
    skopeo copy -q --policy "$POLICY" --all --preserve-digests --src-tls-verify=false \
      "docker://$LINK/$repo:$tag" "oci:$layout:$name" </dev/null
  done <"$SEED_DIR/images.tsv"
  tar -C "$layout" -cf - . | zstd -T0 -3 -q -f -o "$RUN_DIR/skopeo.tar.zst"
  rm -rf "$layout"
}

airgap_pack() {
  rm -f "$RUN_DIR/bundle.tar.zst"
  "$AIRGAP" pack "$SPEC" -o "$RUN_DIR/bundle.tar.zst" -q </dev/null
}

limit_get() {
  local f pids=()
  rm -rf "$RUN_DIR/chunks"
  mkdir -p "$RUN_DIR/chunks"
  sort -t$'\t' -k3,3nr "$SEED_DIR/blobs.tsv" |
    awk -F'\t' -v n="$PAR" -v d="$RUN_DIR/chunks" '{ print > (d "/" (NR - 1) % n ".tsv") }'
  for f in "$RUN_DIR"/chunks/*.tsv; do
    awk -F'\t' -v h="$LINK" '{ printf "url = \"http://%s/v2/%s/blobs/%s\"\noutput = \"/dev/null\"\n", h, $1, $2 }' "$f" >"$f.get"
    curl -sS --noproxy '*' -K "$f.get" -w '%{http_code} %{size_download}\n' >"$f.got" &
    pids+=($!)
  done
  wait "${pids[@]}" # not a bare wait: the seeding coprocess runs on
  cat "$RUN_DIR"/chunks/*.got | awk -v want="$SEED_BLOB_BYTES" '$1 != 200 { bad++ } { sum += $2 }
    END { if (bad || sum != want) { print "GET limit: " bad+0 " errors, " sum " bytes of " want > "/dev/stderr"; exit 1 } }'
}

LINES=()
for SET in "${SETS[@]}"; do
  echo "==> $SET (scale $SCALE): seeding, then the source behind a ${RTT} ms, ${MBIT} Mbit/s link"
  SEED_DIR=$WORK/seed-$SET
  mkdir -p "$SEED_DIR" "$WORK/tmp"
  coproc SEED { TMPDIR="$WORK/tmp" exec "$SEED_BIN" "$SET" "$SCALE" "$SEED_DIR"; }
  seed_pid=$SEED_PID
  read -r -t 1800 -u "${SEED[0]}" word SRC_HOST _ || die "the seeding program failed"
  [[ $word == ready ]] || die "seeding: $word"
  echo "shape link $RTT $((MBIT * 1000000))" >&"${SEED[1]}"
  read -r -t 60 -u "${SEED[0]}" word _ LINK || die "cannot start the shaping proxy"
  [[ $word == shaped ]] || die "shaping proxy: $word $LINK"
  # shellcheck disable=SC1091
  source "$SEED_DIR/summary.env"
  SPEC=$WORK/$SET.yaml
  {
    echo "images:"
    while IFS=$'\t' read -r _ repo tag _ _; do echo "- image: $SRC_HOST/$repo:$tag"; done <"$SEED_DIR/images.tsv"
    echo "registries:"
    echo "  $SRC_HOST: http://$LINK"
  } >"$SPEC"
  TIMES=$WORK/$SET.times
  : >"$TIMES"
  for RUN in $(seq "$RUNS"); do
    echo "  run $RUN of $RUNS ($SEED_IMAGES images, $SEED_BLOBS blobs, $SEED_BLOB_BYTES bytes)"
    RUN_DIR=$WORK/$SET-run$RUN
    mkdir -p "$RUN_DIR"
    timed "skopeo pack" skopeo_pack
    timed "airgap pack" airgap_pack
    timed "limit: GET" limit_get
    rm -rf "$RUN_DIR"
  done
  eval "exec ${SEED[1]}>&-"
  wait "$seed_pid" 2>/dev/null || true
  med() { awk -F'\t' -v l="$1" '$1 == l { print $2 }' "$TIMES" | median; }
  sk=$(med "skopeo pack")
  ag=$(med "airgap pack")
  get=$(med "limit: GET")
  bw=$(awk -v b="$SEED_BLOB_BYTES" -v r="$RATE_BYTES" 'BEGIN { printf "%.2f", b / r }')
  LINES+=("$(printf '%-6s %6d %5d %9.1f %10.2f %10.2f %10.2f %10.2f %9s %9s' "$SET" "$SEED_IMAGES" "$SEED_BLOBS" \
    "$(awk -v b="$SEED_BLOB_BYTES" 'BEGIN { print b / 1048576 }')" "$bw" "$get" "$sk" "$ag" \
    "$(ratio "$ag" "$bw")" "$(ratio "$ag" "$sk")")")
done

{
  echo "airgap bench wan: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, link ${RTT} ms round trip, ${MBIT} Mbit/s each way (shared), scale $SCALE, median of $RUNS run(s)"
  echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  printf '%-6s %6s %5s %9s %10s %10s %10s %10s %9s %9s\n' set images blobs "MiB" "bw limit s" "GET s" "skopeo s" "airgap s" "ag/bw" "ag/skopeo"
  for l in "${LINES[@]}"; do echo "$l"; done
  echo
  echo "bw limit = unique blob bytes / link rate; GET = every blob fetched through the link by $PAR curls;"
  echo "skopeo = its pack workflow (copy per image, tar | zstd -T0 -3); airgap = airgap pack -q."
  echo "targets: large ag/bw <= 1.15; many ag/skopeo <= 0.10."
} >"$REPORT"
echo
cat "$REPORT"
[[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$WORK"
