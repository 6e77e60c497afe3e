#!/usr/bin/env bash
# `make bench-quality`: each ablation of configs/synthlong/stage2.yaml (a --model.preset) over
# several seeds, all from the demo's stage 1, then one table (mean ± std over seeds).
# Two runs at a time, each with one thread and inline data loading (~1.7x the throughput of one
# run on 2 cores). Choose settings on val, report on test:
#   SPLIT=val PRESETS=full SEEDS="0 1 2" EXTRA="--model.lambda_word 0.1" bash benchmarks/quality.sh
set -euo pipefail
export CLI=${CLI:-.venv/bin/mulclip-pl} OUT=${OUT:-runs/bench_quality} SPLIT=${SPLIT:-test} EXTRA=${EXTRA:-}
PRESETS=${PRESETS:-"global_only no_sap no_wpr full"}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}

label() {
  case "$1" in
    global_only) echo "Long-CLIP-style global (long + short)" ;;
    no_sap) echo "MulCLIP without SAP" ;;
    no_wpr) echo "MulCLIP without WPR" ;;
    *) echo "MulCLIP ($1)" ;;
  esac
}

one_run() {  # PRESET SEED: fit, then score on $SPLIT (`validate` for val, `test` for test)
  local name="$1_seed$2" subcommand=test
  [ "$SPLIT" = val ] && subcommand=validate
  OMP_NUM_THREADS=1 $CLI fit --config configs/synthlong/stage2.yaml --model.preset "$1" --seed_everything "$2" \
    --data.init_args.seed "$2" --data.init_args.num_workers 0 --trainer.check_val_every_n_epoch 1000 \
    --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/$name" --checkpoint.dirpath "$OUT/$name" \
    --trainer.logger.init_args.save_dir "$OUT" --trainer.logger.init_args.version "$name" $EXTRA > "$OUT/$name.log" 2>&1
  OMP_NUM_THREADS=1 $CLI $subcommand --config configs/synthlong/stage2.yaml --ckpt_path "$OUT/$name/last.ckpt" \
    --run_name "$(label "$1")" --data.init_args.num_workers 0 --trainer.logger false \
    --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/$SPLIT/$name" >> "$OUT/$name.log" 2>&1
  echo "finished $name (log: $OUT/$name.log)"
}
export -f label one_run

mkdir -p "$OUT"
for preset in $PRESETS; do rm -rf "$OUT/${preset}"_seed*/ "$OUT/$SPLIT/${preset}"_seed*/; done  # other presets' runs stay
for preset in $PRESETS; do for seed in $SEEDS; do echo "$preset $seed"; done; done |
  xargs -P "$JOBS" -L 1 bash -c 'one_run "$@"' _

if [ "$SPLIT" = test ] && [ -f runs/demo/test/stage1/results.json ]; then  # the stage-1 row, for reference
  mkdir -p "$OUT/test/stage1" && cp runs/demo/test/stage1/results.json "$OUT/test/stage1/"
fi
$CLI report "$OUT/$SPLIT" --out "$OUT/results_$SPLIT.md"
