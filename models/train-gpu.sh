#!/usr/bin/env bash
# models/train-gpu.sh — one prepared demo-model training run on a lent GPU machine (the
# `device` tool), within its 8 minutes: the transformer and text encoders of
# models/ras-demo, continued from the committed model (--init-from, same shapes) with its
# VAE, on CUDA in bf16 autocast, at a batch the CPU cannot afford.
#
# Here, once, beforehand:   bash bench/prepare-gpu-check.sh --no-gl --no-build   # .whl/
# On the device (carry .whl; the command line of the `run` call):
#     bash models/train-gpu.sh
# It writes $OUT/ras-demo.tar (the trained folder, with train_log.json and TRAINING.md),
# $OUT/eval.json (models/eval_demo.py's scores of it) and $OUT/train.log. Back here: tar -xf ras-demo.tar -C /tmp, score it
# (`ras compare --adherence models/demo_prompts.json --model /tmp/ras-demo`) and
# commit it over models/ras-demo only if the scores improve (models/README.md).
#
# Environment: MINUTES (transformer-phase budget, default 6.5), STEPS (default 40000,
# the schedule is shortened to the budget), BATCH (default 128).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${MINUTES:-6.5}
STEPS=${STEPS:-40000}
BATCH=${BATCH:-128}
OUT=${OUT:-/tmp/train-gpu-out}
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" >/dev/null; then
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
		--target /tmp/site .whl/*.whl
	export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import diffusers, torch; print('diffusers', diffusers.__version__, 'torch', torch.__version__, torch.cuda.get_device_name(0))"

# The committed folder is both the starting point and the VAE's source; copy it so that
# the run's output can replace nothing in the tree.
rm -rf /tmp/ras-demo-start && cp -r models/ras-demo /tmp/ras-demo-start
export PYTHONUNBUFFERED=1
python3 models/train_demo.py --device cuda --out /tmp/ras-demo \
	--init-from /tmp/ras-demo-start --vae-from /tmp/ras-demo-start \
	--dataset-size 20000 --steps "$STEPS" --batch-size "$BATCH" --lr 5e-4 --warmup 200 \
	--object-weight 4 --sigma-dist uniform --sigma-shift 3 --time-budget-min "$MINUTES" --log-every 200 \
	2>&1 | tee "$OUT/train.log"
tar -cf "$OUT/ras-demo.tar" -C /tmp ras-demo
# diffusers' own scores of the result (28 held-out prompts, the engine's default 28 steps
# and guidance 7): adherence and shape, in $OUT/eval.json.
python3 models/eval_demo.py /tmp/ras-demo --steps 28 --guidance 7 --device cuda --out-dir /tmp/eval \
	--json "$OUT/eval.json" 2>&1 | tail -3 | tee -a "$OUT/train.log"
ls -la "$OUT"
