#!/usr/bin/env bash
# One short check of tljax on a GPU machine (jax, flax, optax, orbax, chex
# installed; tensorflow-datasets and PyTorch need not be). Run from the
# repository root:  bash scripts/gpu_check.sh [OUTDIR]
# Budget: under 8 minutes including compilation on one H100/H200-class GPU.
#  1. tljax imports and trains without tensorflow-datasets (in-memory toy data);
#  2. the tests worth repeating on the device: vmapped sweep
#     members == single runs, bf16 compute with f32 parameters (on the GPU);
#  3. the ResNet-50 DANN step (224x224, batch 32+32) throughput in f32 and bf16,
#     as a fraction of the peak FLOP/s given (H100 SXM: 67 / 989 dense TFLOP/s;
#     H200: the same chip) -> OUTDIR/gpu_benchmark.md;
#  4. that step fed by the image pipeline;
#  5. the 2-process localhost case through jax.distributed (see the end of this
#     file and docs/multihost.md).
set -euo pipefail
OUT="${1:-gpu_check_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python - <<'PY'
import builtins, sys
real_import = builtins.__import__
def no_tfds(name, *args, **kwargs):
  if name.split(".")[0] == "tensorflow_datasets":
    raise ImportError("tensorflow_datasets is hidden for this check")
  return real_import(name, *args, **kwargs)
builtins.__import__ = no_tfds
import jax, tempfile
print("devices:", jax.devices())
sys.path.insert(0, "configs")
import moons
from tljax.train.loop import train_and_evaluate
config = moons.get_config("method=dann,seeds=1")
config.steps, config.progress_bar = 200, False
summary = train_and_evaluate(config, tempfile.mkdtemp(), seed=0)
print("moons dann without tensorflow_datasets:", summary["target_test"])
PY
if python -c "import pytest" 2>/dev/null; then
  timeout 300 python -m pytest -q -p no:cacheprovider tests/test_mixed_precision.py \
    tests/test_sweep.py 2>&1 | tail -5 | tee "$OUT/gpu_tests.txt" || true
fi
timeout 300 python scripts/benchmark.py --sections resnet --no_torch \
  --peak_tflops_fp32 "${PEAK_TFLOPS_FP32:-67}" --peak_tflops_bf16 "${PEAK_TFLOPS_BF16:-989}" \
  --note "scripts/gpu_check.sh" --output "$OUT/gpu_benchmark.md"
cat "$OUT/gpu_benchmark.md"
# 4. The same step fed by tljax's image pipeline (grain workers decoding and
#    augmenting synthetic JPEGs) next to the step alone -> OUTDIR/gpu_fed_step.md.
if python -c "import grain, PIL" 2>/dev/null; then
  timeout 240 python scripts/benchmarks/fed_step.py --steps 20 --images 256 \
    --output "$OUT/gpu_fed_step.md" || echo "fed step: failed or timed out"
  cat "$OUT/gpu_fed_step.md" 2>/dev/null || true
else
  echo "fed step: skipped (grain or Pillow not installed on this machine)"
fi
# 5. The 2-process localhost case (docs/multihost.md): scripts/launch_local.py
#    runs `tljax train` as 2 processes through jax.distributed, one per GPU
#    where there are two or more, else 2 CPU processes of 2 fake devices each;
#    their final parameters against one process -> OUTDIR/gpu_multiprocess.txt
#    (about a minute; 4 minutes at most).
MP_DIR="$(mktemp -d)"
MP_ARGS=(--config configs/moons.py:method=source_only,seeds=1 --set steps=60
  --set batch_size=32 --set 'baselines=()' --set log_every=10
  --set checkpoint_every=20 --set optimizer.name=sgd
  --set optimizer.learning_rate=0.05 --set progress_bar=false --noreport)
if [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)" -ge 2 ]; then
  MP_MODE=(--gpu_each); MP_ENV=()
else
  MP_MODE=(--devices_per_process 2); MP_ENV=(JAX_PLATFORMS=cpu)
fi
{
  echo "multi-process: launch_local.py -n 2 ${MP_MODE[*]}"
  env "${MP_ENV[@]}" timeout 100 python -m tljax train "${MP_ARGS[@]}" \
    --workdir "$MP_DIR/one" > "$MP_DIR/one.log" 2>&1 &&
  timeout 140 python scripts/launch_local.py -n 2 "${MP_MODE[@]}" --timeout 30 -- \
    python -m tljax train "${MP_ARGS[@]}" --set parallel.data_parallel=true \
    --workdir "$MP_DIR/two" > "$MP_DIR/two.log" 2>&1 &&
  JAX_PLATFORMS=cpu python - "$MP_DIR" <<'PY'
import json, os, sys
import numpy as np
from tljax.params import flatten, read_checkpoint
run = os.path.join("source_only", "seed_0")
one, two = (
    flatten(read_checkpoint(os.path.join(sys.argv[1], name, run))[0])
    for name in ("one", "two")
)
worst = max(float(np.max(np.abs(np.asarray(one[k]) - np.asarray(two[k])))) for k in one)
lines = [open(os.path.join(sys.argv[1], name, run, "metrics.jsonl")).read().count("\n")
         for name in ("one", "two")]
ok = set(one) == set(two) and worst <= 1e-4 and lines[0] == lines[1]
print(f"2 processes vs 1: largest parameter difference {worst:.2e}, metrics "
      f"lines {lines[1]} vs {lines[0]}: {'PASS' if ok else 'FAIL'}")
PY
} 2>&1 | tee "$OUT/gpu_multiprocess.txt" || true
grep -q PASS "$OUT/gpu_multiprocess.txt" || {
  echo "multi-process: failed or timed out; the last lines of its logs:"
  tail -n 5 "$MP_DIR"/*.log 2>/dev/null || true
}
