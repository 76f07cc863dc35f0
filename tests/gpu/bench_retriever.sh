#!/usr/bin/env bash
# The retriever benchmarks of issue 3 in one device call (GPU machine: 16 cores, one GPU), each
# beside its anchor in the same run:
#   1. encoder throughput, E5-base shape, random weights, batch 512 x 180 tokens: ours on burn-cuda
#      (and tch-cuda when compiled in) in f16, then transformers' BertModel fp16 (PyTorch);
#   2. 1M clustered synthetic 768-d unit vectors + 1,000 held-out queries + exact top-10 (numpy);
#   3. ours: usearch HNSW f32, f16, i8 (usearch's own f32->i8 conversion, as `research index`
#      does) and i8-maxabs (i8 quantized by us, each vector scaled to use +-127) built in process
#      (build time, bytes/vector, RSS, QPS over all cores, recall@10, single-thread latency) at
#      several efSearch;
#   4. faiss-cpu IndexFlatIP and IndexHNSWFlat (same M / efConstruction / efSearch), same files;
#   5. the markdown tables (tests/gpu/retriever_table.py) into $OUT/tables.md.
# Stage first (`cargo xtask stage-gpu --features cuda,tch`: stage/xz or stage/bin), download the
# faiss-cpu wheel into .whl/ (see docs/benchmarks.md), then from the repo root, carrying stage and
# .whl:
#     bash tests/gpu/bench_retriever.sh      (JSON lines and logs under $OUT)
# The whole script stops by BUDGET_S seconds (default 560, under a 10-minute device call): each
# step gets at most what is left. Knobs: N, QUERIES, M, EFC, EFS, THREADS, QUANT, ENC_BACKENDS,
# ENC_DTYPE, ENC_BATCH, ENC_ITERS, TORCH_DEVICE, SKIP_ENCODER=1, SKIP_SEARCH=1, DATA (vectors).
set -u
START=$(date +%s)
OUT=${OUT:-/tmp/bench-retriever}
mkdir -p "$OUT"
BIN=${BIN:-stage/bin/research}
N=${N:-1000000}
QUERIES=${QUERIES:-1000}
DIMS=768
M=${M:-16}
EFC=${EFC:-64}
EFS=${EFS:-16,32,64,128}
THREADS=${THREADS:-$(nproc)}
DATA=${DATA:-/tmp/retriever-vectors}
BUDGET_S=${BUDGET_S:-560}
export PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib:${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/cuda/lib64:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib

elapsed() { echo $(($(date +%s) - START)); }
# step CAP CMD...: runs CMD under timeout min(CAP, time left); says so when there is no time left.
step() {
  local cap=$1 left
  shift
  left=$((BUDGET_S - $(elapsed)))
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -le 5 ]; then
    echo "== SKIPPED (budget of ${BUDGET_S}s spent): $*" >&2
    return 124
  fi
  echo "== [$(elapsed)s] $* (limit ${cap}s)" >&2
  timeout "$cap" "$@"
}

# Binaries packed by `cargo xtask stage-gpu` (stage/xz/*.xz) are unpacked once.
mkdir -p stage/bin
for f in stage/xz/*.xz; do
  [ -e "$f" ] || continue
  b=stage/bin/$(basename "$f" .xz)
  [ -x "$b" ] && [ "$b" -nt "$f" ] && continue
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "$b" && chmod +x "$b"
done
# faiss-cpu from the carried wheel (no network there); numpy and packaging are already installed.
if ! python3 -c 'import faiss' 2>/dev/null; then
  if ls .whl/faiss_cpu-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/faiss_cpu-*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  lscpu | grep -E '^(Model name|CPU\(s\))'
  python3 -c "import torch, transformers, numpy; print('torch', torch.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)"
  python3 -c "import faiss; print('faiss', faiss.__version__)" || echo "faiss: not importable"
} 2>&1 | tee "$OUT/machine.txt"
status=0

if [ "${SKIP_ENCODER:-0}" != 1 ]; then
  E=(--batch "${ENC_BATCH:-512}" --tokens 180 --warmup 3 --iters "${ENC_ITERS:-10}" --dtype "${ENC_DTYPE:-f16}")
  for be in ${ENC_BACKENDS:-cuda tch-cuda}; do
    CUBECL_AUTOTUNE_LEVEL=minimal step 150 "$BIN" bench encoder --family e5 --backend "$be" "${E[@]}" | tee -a "$OUT/encoder.jsonl"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
  done
  step 90 python3 tests/gpu/bench_encoder_torch.py --device "${TORCH_DEVICE:-cuda}" "${E[@]}" | tee -a "$OUT/encoder.jsonl"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

if [ "${SKIP_SEARCH:-0}" != 1 ]; then
  if [ -s "$DATA/truth.u32" ] && grep -q "\"n\": $N," "$DATA/meta.json" 2>/dev/null; then
    echo "== reusing $DATA" >&2
  else
    step 150 python3 tests/gpu/gen_search_vectors.py --n "$N" --queries "$QUERIES" --dims $DIMS --out "$DATA" || status=1
    cp "$DATA/meta.json" "$OUT/vectors_meta.json" 2>/dev/null
  fi
  V=(--vectors "$DATA/base.f32" --queries "$DATA/queries.f32" --truth "$DATA/truth.u32" --dims $DIMS)
  H=(--connectivity "$M" --expansion-add "$EFC" --expansion-search "$EFS" --threads "$THREADS" --min-seconds 0.5)
  step 280 "$BIN" bench search "${V[@]}" "${H[@]}" --quantization ${QUANT:-f32,f16,i8,i8-maxabs} | tee -a "$OUT/search.jsonl"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  step 200 python3 tests/gpu/bench_search_faiss.py "${V[@]}" "${H[@]}" | tee -a "$OUT/search.jsonl"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

files=()
for f in "$OUT/encoder.jsonl" "$OUT/search.jsonl"; do [ -s "$f" ] && files+=("$f"); done
[ ${#files[@]} -gt 0 ] && python3 tests/gpu/retriever_table.py "${files[@]}" | tee "$OUT/tables.md"
echo "== done in $(elapsed)s (status $status)" >&2
exit $status
