#!/usr/bin/env bash
# Where a burn-cuda GRPO update step spends GPU time: Nsight Compute's kernel durations
# (gpu__time_duration, no replay, clocks left alone) summed by kernel name, for one update step.
# The step's kernels are the difference between a run with 2 timed steps and one with 1 (both
# with the same log-prob pass and model init). Also prints the wall time of the step without
# ncu, so "GPU busy" = kernel time / wall time tells device-bound from host-bound.
#     bash tests/gpu/profile_train.sh   (stage carried; CONFIG, BATCH, SEQ, ATTENTION override)
set -u
OUT=${OUT:-/tmp/profile-train}
mkdir -p "$OUT" stage/bin
f=stage/xz/research.xz
python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" stage/bin/research && chmod +x stage/bin/research
export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib:/usr/local/cuda/lib64:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}
export CUBECL_AUTOTUNE_LEVEL=minimal RESEARCH_ATTENTION=${ATTENTION:-fused}
CONFIG=${CONFIG:-data/qwen2.5_configs/Qwen2.5-0.5B-Instruct/config.json}
ARGS="bench train --config $CONFIG --backend cuda --dtype bf16 --batch ${BATCH:-2} --seq-len ${SEQ:-2048} --warmup 0"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
stage/bin/research $ARGS --steps 3 2>&1 | tail -4 | tee "$OUT/wall.txt"
for n in 1 2; do
  timeout 280 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$OUT/ncu$n.csv" \
    stage/bin/research $ARGS --steps $n > "$OUT/run$n.txt" 2>&1
  echo "ncu run $n: exit $?, $(wc -l < "$OUT/ncu$n.csv") lines"
done
python3 - "$OUT" <<'PY'
import csv, sys, collections
out = sys.argv[1]
def load(n):
    rows = collections.defaultdict(lambda: [0, 0.0])
    with open(f"{out}/ncu{n}.csv") as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "ns")
        v *= {"ns": 1e-9, "us": 1e-6, "usecond": 1e-6, "msecond": 1e-3, "ms": 1e-3, "nsecond": 1e-9, "second": 1.0}.get(unit, 1e-9)
        name = r["Kernel Name"].split("(")[0][:90]
        rows[name][0] += 1
        rows[name][1] += v
    return rows
a, b = load(1), load(2)
diff = {k: (b[k][0] - a.get(k, [0, 0])[0], b[k][1] - a.get(k, [0, 0.0])[1]) for k in b}
total = sum(t for _, t in diff.values())
launches = sum(c for c, _ in diff.values())
print(f"one update step: {launches} kernel launches, {total*1e3:.1f} ms of kernel time")
for k, (c, t) in sorted(diff.items(), key=lambda kv: -kv[1][1])[:40]:
    print(f"{t*1e3:9.2f} ms {100*t/max(total,1e-12):5.1f} % {c:6d}x  {k}")
PY
