#!/usr/bin/env bash
# The GPU figures of the mixed-precision issue in one prepared run (at most ~9 min on one H100):
#   bash benchmarks/gpu_check.sh            # GPU: ViT-B/16, batch 128 (1024 in chunks of 128), M = 6, bf16
#   bash benchmarks/gpu_check.sh --cpu      # the same steps end to end on a CPU with the tiny test model
# Prints one Markdown section per measurement; a failed section is reported and the script goes
# on, then exits non-zero. Copy the output into benchmarks/README.md with the card's name.
# On a machine without the project's packages, install them first (benchmarks/README.md,
# "GPU check"): open_clip_torch, jsonargparse[signatures], spacy, ftfy, datasets, this package.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
CLI="$PY -m mulclip_pl.cli"
OUT=${OUT:-runs/gpu_check}
if [ "${1:-}" = "--cpu" ]; then
  MODEL=mulclip-test; BATCH=8; STEPS=2; FIT_STEPS=10; WORKERS=2; ACCEL=cpu; SHORT=5; PX=32; BIG_BATCH=32
  COMPILE_VARIANTS=dynamic  # benchmarks/compile.py's names; eager always runs
else
  MODEL=ViT-B-16; BATCH=128; STEPS=10; FIT_STEPS=300; WORKERS=8; ACCEL=gpu; SHORT=30; PX=64; BIG_BATCH=1024
  COMPILE_VARIANTS="dynamic cudagraphs"  # each compiles twice: a first run (empty caches: cold), then warm
fi
mkdir -p "$OUT"; failed=()

section() {  # NAME SECONDS COMMAND...: run with a time limit, keep going on failure
  local name=$1 limit=$2; shift 2
  echo; echo "## $name"; local start=$SECONDS
  timeout "$limit" "$@" || { echo "FAILED ($name, rc $?)"; failed+=("$name"); }
  echo "($((SECONDS - start)) s)"
}

fit() {  # NAME STEPS [more CLI args]: a short SynthLong fit with every step's loss in a CSV log
  local name=$1 steps=$2; shift 2
  rm -rf "$OUT/$name"
  $CLI fit --config configs/synthlong/stage2.yaml --model.model_name "$MODEL" --model.init_from null \
    --model.max_nonfinite_steps 1 --trainer.accelerator "$ACCEL" --trainer.devices 1 --trainer.precision bf16-mixed \
    --trainer.max_steps "$steps" --trainer.check_val_every_n_epoch 1000 --trainer.log_every_n_steps 1 \
    --trainer.enable_progress_bar false --data.init_args.batch_size "$BATCH" --data.init_args.num_workers "$WORKERS" \
    --data.init_args.root "$OUT/synthlong" --data.init_args.image_px "$PX" \
    --trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir "$OUT" --trainer.logger.name "$name" \
    --trainer.logger.version "" --trainer.default_root_dir "$OUT/$name" --checkpoint.dirpath "$OUT/$name" "$@" \
    > "$OUT/$name.log" 2>&1 || { tail -20 "$OUT/$name.log"; return 1; }
  $PY - "$OUT/$name/metrics.csv" <<'PYEOF'
import csv, math, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r.get("train/loss")]
losses = [float(r["train/loss"]) for r in rows]
print(f"{len(losses)} logged steps, loss first {losses[0]:.4f}, last {losses[-1]:.4f}, "
      f"all finite: {all(math.isfinite(x) for x in losses)}")
sys.exit(0 if losses and all(math.isfinite(x) for x in losses) else 1)
PYEOF
}

section "machine" 60 bash -c "nvidia-smi -L 2>/dev/null || echo 'no GPU'; $PY -c 'import torch, lightning, open_clip; print(\"torch\", torch.__version__, \"lightning\", lightning.__version__, \"open_clip\", open_clip.__version__, \"cuda\", torch.cuda.is_available())'"
section "step cost: plain CLIP vs Long-CLIP-style global vs MulCLIP ($MODEL, batch $BATCH, M = 6)" 150 \
  $PY benchmarks/train_step.py --model "$MODEL" --batch-size "$BATCH" --sentences 6 --steps "$STEPS" --grad-checkpointing --sentence-features span --patch-tokens value_value
section "MulCLIP step and memory against M" 120 \
  $PY benchmarks/train_step.py --model "$MODEL" --batch-size "$BATCH" --steps "$STEPS" --scan sentences --values 1 3 6 10
section "gradient caching: batch $BIG_BATCH in chunks of $BATCH (--model.encode_chunk) vs the whole batch of $BATCH" 300 \
  $PY benchmarks/chunked_step.py --model "$MODEL" --batch-sizes "$BATCH" "$BIG_BATCH" --chunk "$BATCH" --whole-up-to "$BATCH" --steps 3
section "torch.compile (--model.compile): steps/s eager vs compiled, compile time apart ($MODEL, batch $BATCH)" 300 \
  $PY benchmarks/compile.py --model "$MODEL" --batch-size "$BATCH" --steps "$STEPS" --variants $COMPILE_VARIANTS
section "bf16 vs fp32 loss at step 0" 60 $PY benchmarks/precision_check.py --model "$MODEL" --batch-size "$BATCH"
section "loader samples/s ($WORKERS workers; compare with the step's samples/s above)" 90 \
  $PY benchmarks/dataloader.py --workers "$WORKERS" --batch-size "$BATCH" --batches 6
section "weight-decay groups under FSDP ($MODEL; 2 CPU processes, so parameters are 1-D shards)" 240 \
  $PY benchmarks/fsdp_groups.py --model "$MODEL"
export -f fit; export CLI MODEL BATCH ACCEL WORKERS OUT PY PX  # `timeout` runs them through bash -c
section "bf16 fit, $FIT_STEPS steps on SynthLong, every loss finite" 200 bash -c "fit bf16_fit $FIT_STEPS"
if [ "$ACCEL" = gpu ]; then
  section "FSDP on one GPU vs DDP, $SHORT steps (losses side by side)" 150 bash -c \
    "fit ddp $SHORT --config configs/strategies/ddp.yaml --trainer.devices 1 && \
     fit fsdp $SHORT --config configs/strategies/fsdp.yaml --trainer.devices 1"
else
  echo; echo "## FSDP vs DDP"; echo "skipped: Lightning's FSDP strategy needs CUDA"
fi
echo
if [ ${#failed[@]} -gt 0 ]; then echo "failed sections: ${failed[*]}"; exit 1; fi
echo "all sections passed"
