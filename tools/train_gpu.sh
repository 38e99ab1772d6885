#!/usr/bin/env bash
# Train on a GPU machine that has PyTorch but neither this package's data nor network access,
# then export: the recipe behind the shipped full-width model (docs/TRAINING.md).
#
#   PACK=.devdata/train.pack.npz OUT=/tmp/out MINUTES=8 bash tools/train_gpu.sh
#
# PACK is the lossless compact training set (python -m training.compact_data pack ...), OUT
# receives stdout.log, log.jsonl, config.json, the exported model and the compact eval checkpoint.
# Extra arguments go to training.train (e.g. --epochs 200 --width half).
set -euo pipefail
PACK=${PACK:-.devdata/train.pack.npz}
OUT=${OUT:-/tmp/pynq_bnn_gpu_out}
MINUTES=${MINUTES:-8}
RUN=${RUN:-/tmp/pynq_bnn_run}
DEVICE=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" /tmp/pynq_bnn_data
python3 -c "import torch, PIL, numpy; print('torch', torch.__version__, 'Pillow', PIL.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
python3 -m training.compact_data unpack --allow-mismatch "$PACK" /tmp/pynq_bnn_data/train.npz
python3 -m training.train --width full --device "$DEVICE" --epochs 500 --ckpt-minutes 2 \
    --time-budget-minutes "$MINUTES" --threads 8 --data /tmp/pynq_bnn_data --out "$RUN" "$@" \
    2>&1 | tee "$OUT/stdout.log"
python3 -m training.export --checkpoint "$RUN" --out "$OUT/cifar10_bnn.npz" \
    --eval-checkpoint "$OUT/best_eval.pt" 2>&1 | tee -a "$OUT/stdout.log"
cp "$RUN/log.jsonl" "$RUN/config.json" "$OUT/"
ls -la "$OUT"
