#!/usr/bin/env bash
# GPU benchmark of student training and inference (see bench/student_gpu.py): a t5-v1_1-base-shaped student,
# MT+CF at 48 questions a step for 200 steps in bf16 and fp32, then batched inference over the 1,221 dev questions.
# Usage: EVALSITE_DATA_DIR=../shared/data bench/gpu.sh [extra student_gpu.py options]
# CPU dry run (checks that it runs, in a minute): bench/gpu.sh --shape tiny --steps 2 --warmup 1 --questions 2 --train-questions 60 --inference-questions 4 --max-tokens 64 --precisions fp32,bf16
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export EVALSITE_DATA_DIR="${EVALSITE_DATA_DIR:-../shared/data}"
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
exec "$PYTHON" bench/student_gpu.py --shape t5-v1_1-base --questions 48 --steps 200 --precisions bf16,fp32 \
  --inference-questions 1221 --json "${BENCH_JSON:-/tmp/student_gpu.json}" "$@"
