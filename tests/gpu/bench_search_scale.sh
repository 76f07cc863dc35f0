#!/usr/bin/env bash
# The wiki-18-scale search benchmark of issue 3 on the GPU machine's CPU (16 cores, 128 GiB RAM,
# 64 GiB disk; the GPU is not used): `research bench search-scale` builds a usearch HNSW index of
# N synthetic clustered 768-d vectors generated in process (the f32 base, 64.5 GB at 21M, is never
# written), in calls bounded by BUDGET_S seconds that save the index and resume from it, then opens
# the saved index as a memory-mapped view in a fresh process and reports open time, RSS,
# recall@5/@10 against an exact top-10 (brute force over the regenerated base), QPS and latency.
#
# Stage first (`cargo xtask stage-gpu`: stage/xz or stage/bin), then from the repo root, carrying
# stage:
#     bash tests/gpu/bench_search_scale.sh
# and run the same again while it ends with "INCOMPLETE" (exit status 75): the index folder
# ($DIR, under the git-ignored runs/) stays on a warm machine between calls. A fresh (cold)
# machine starts over. JSON lines and the log go to $OUT; the index never does.
# Knobs: N (21015324), QUANT (i8 | f16 | f32), M (16), EFC (64), EFS (128,256,512,1024), QUERIES (200),
# THREADS (all cores), BUDGET_S (540: the whole script), CHUNK (262144 rows), DIR,
# PARTS (1: one HNSW index; P > 1: a partition-routed index of P usearch graphs, k-means routing;
# 0: from N, N / 20000), PROBE (2,4,8: partitions searched per query, measured per value).
# The partitioned 21M run (about 1050 partitions; k-means, assignment, build and measure in one call):
#     PARTS=1050 EFS=64,128,256,512 BUDGET_S=575 bash tests/gpu/bench_search_scale.sh
# Disk: a save writes index.usearch.partial beside the previous index.usearch before renaming it,
# so up to twice the index (i8, M 16: ~2 × 19 GB) is needed for a moment.
set -u
START=$(date +%s)
OUT=${OUT:-/tmp/search-scale}
mkdir -p "$OUT"
BIN=${BIN:-stage/bin/research}
N=${N:-21015324}
QUANT=${QUANT:-i8}
M=${M:-16}
EFC=${EFC:-64}
EFS=${EFS:-128,256,512,1024}
QUERIES=${QUERIES:-200}
THREADS=${THREADS:-$(nproc)}
BUDGET_S=${BUDGET_S:-540}
CHUNK=${CHUNK:-262144}
PARTS=${PARTS:-1}
PROBE=${PROBE:-2,4,8}
if [ "$PARTS" = 1 ]; then
  DIR=${DIR:-runs/search-scale/n$N-$QUANT-m$M-efc$EFC}
else
  DIR=${DIR:-runs/search-scale/n$N-$QUANT-m$M-efc$EFC-p$PARTS}
fi

# Binaries packed by `cargo xtask stage-gpu` (stage/xz/*.xz) are unpacked once.
mkdir -p stage/bin
for f in stage/xz/*.xz; do
  [ -e "$f" ] || continue
  b=stage/bin/$(basename "$f" .xz)
  [ -x "$b" ] && [ "$b" -nt "$f" ] && continue
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "$b" && chmod +x "$b"
done
mkdir -p "$DIR"
{
  date -u
  lscpu | grep -E '^(Model name|CPU\(s\))'
  free -g | head -2
  df -h "$DIR" | tail -1
  cat "$DIR/scale.json" 2>/dev/null || echo "no saved state in $DIR: a new build"
} 2>&1 | tee -a "$OUT/machine.txt"

left=$((BUDGET_S - ($(date +%s) - START)))
# The command keeps to --budget-s (saving included) for the build; the measurement (view, exact
# top-10, searches: about 1-2 minutes at 21M) starts only with --measure-reserve-s left. The
# timeout is a backstop: a kill during a save loses only that call's work (the previous index
# stays until the new one is complete).
timeout $((left + 30)) "$BIN" bench search-scale --dir "$DIR" --n "$N" --dims 768 --quantization "$QUANT" \
  --connectivity "$M" --expansion-add "$EFC" --ef "$EFS" --queries "$QUERIES" --threads "$THREADS" \
  --chunk-rows "$CHUNK" --partitions "$PARTS" --probe "$PROBE" --budget-s "$left" --measure-reserve-s 120 \
  2> >(tee -a "$OUT/search_scale.log" >&2) | tee -a "$OUT/search_scale.jsonl"
status=${PIPESTATUS[0]}
sleep 1
cp "$DIR/scale.json" "$OUT/" 2>/dev/null
ls -la "$DIR" | tee -a "$OUT/machine.txt"
df -h "$DIR" | tail -1 | tee -a "$OUT/machine.txt"
case $status in
  0) echo "== done in $(($(date +%s) - START)) s" >&2 ;;
  75) echo "== INCOMPLETE after $(($(date +%s) - START)) s: run this script again (same settings, warm machine) to resume" >&2 ;;
  *) echo "== FAILED (status $status) after $(($(date +%s) - START)) s" >&2 ;;
esac
exit $status
