#!/usr/bin/env bash
# GPU packing check: a small MLP sweep with 1, 4 and 8 trials per GPU on a machine with an NVIDIA GPU.
# Records trials per minute and peak GPU memory per trial into BENCHMARKS.md (appends a section).
#   bash benchmarks/gpu_check.sh            (from the repository root, after the README's install)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this machine has no NVIDIA GPU" >&2; exit 2; }
WORK=$(mktemp -d /tmp/st-gpu-XXXX)
SAMPLES=16
{
  echo
  echo "## GPU packing ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(date +%F))"
  echo
  echo "Produced by \`bash benchmarks/gpu_check.sh\`: $SAMPLES MLP trials (digits 32x32, width 1024, depth 3, 5 epochs) per setting."
  echo
  echo "| trials per GPU | --gpus-per-trial | trials per minute | peak GPU memory per trial (MiB) |"
  echo "|---|---|---|---|"
} > "$WORK/section.md"
for per_gpu in 1 4 8; do
  fraction=$("$PY" -c "print(1/$per_gpu)")
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$WORK/mem-$per_gpu.log" &
  SAMPLER=$!
  start=$(date +%s.%N)
  "$PY" -m scenetune sweep mlp --samples $SAMPLES --epochs 5 --set image_size=32 --set width=1024 --set depth=3 \
    --gpus-per-trial "$fraction" --cpus-per-trial 1 --max-concurrent "$per_gpu" --storage "$WORK" --name "gpu-$per_gpu" >/dev/null
  end=$(date +%s.%N)
  kill $SAMPLER
  "$PY" - "$start" "$end" "$WORK/mem-$per_gpu.log" "$per_gpu" "$fraction" >> "$WORK/section.md" <<'PYEOF'
import sys
start, end, log, per_gpu, fraction = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
used = [int(line) for line in open(log) if line.strip().isdigit()]
baseline, peak = (min(used), max(used)) if used else (0, 0)
print(f"| {per_gpu} | {float(fraction):.3g} | {16 * 60 / (end - start):.1f} | {(peak - baseline) / per_gpu:.0f} |")
PYEOF
done
cat "$WORK/section.md" | tee -a BENCHMARKS.md
