#!/usr/bin/env bash
# `make bench-quality`: each ablation of configs/synthlong/stage2.yaml (a --model.preset) over
# several seeds, all from the demo's stage 1, then one table (mean ± std over seeds).
# Two runs at a time, each with one thread and inline data loading (~1.7x the throughput of one
# run on 2 cores). Choose settings on val, report on test:
#   SPLIT=val PRESETS=full SEEDS="0 1 2" TAG=word0.1 EXTRA="--model.lambda_word 0.1" bash benchmarks/quality.sh
# TAG names a variant's runs (folder PRESET_TAG_seedN, row "MulCLIP (PRESET, TAG)"), so variants sit
# side by side in one table. REUSE=1 scores a run's existing last.ckpt instead of training it again
# (e.g. the test split's runs on val).
set -euo pipefail
export CLI=${CLI:-.venv/bin/mulclip-pl} OUT=${OUT:-runs/bench_quality} SPLIT=${SPLIT:-test} EXTRA=${EXTRA:-}
PRESETS=${PRESETS:-"global_only no_sap no_wpr full"}
SEEDS=${SEEDS:-"0 1 2"}
export TAG=${TAG:-} REUSE=${REUSE:-}
JOBS=${JOBS:-2}

label() {  # PRESET -> the table's row name
  local text
  case "$1" in
    global_only) text="Long-CLIP-style global (long + short)" ;;
    no_sap) text="MulCLIP without SAP" ;;
    no_wpr) text="MulCLIP without WPR" ;;
    *) text="MulCLIP ($1)" ;;
  esac
  echo "$text${TAG:+ [$TAG]}"
}

one_run() {  # PRESET SEED: fit, then score on $SPLIT (`validate` for val, `test` for test)
  # test: SynthLong's test split and its cross-domain set (the demo's test.yaml, loading inline)
  local name="$1${TAG:+_$TAG}_seed$2" subcommand=test eval_data="--config $OUT/test_inline.yaml"
  [ "$SPLIT" = val ] && subcommand=validate eval_data="--data.init_args.num_workers 0"
  if [ -n "$REUSE" ] && [ -f "$OUT/$name/last.ckpt" ]; then
    echo "reusing $OUT/$name/last.ckpt"
  else OMP_NUM_THREADS=1 $CLI fit --config configs/synthlong/stage2.yaml --model.preset "$1" --seed_everything "$2" \
    --data.init_args.seed "$2" --data.init_args.num_workers 0 --trainer.check_val_every_n_epoch 1000 \
    --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/$name" --checkpoint.dirpath "$OUT/$name" \
    --trainer.logger.init_args.save_dir "$OUT" --trainer.logger.init_args.version "$name" $EXTRA > "$OUT/$name.log" 2>&1
  fi
  OMP_NUM_THREADS=1 $CLI $subcommand --config configs/synthlong/stage2.yaml $eval_data --ckpt_path "$OUT/$name/last.ckpt" \
    --run_name "$(label "$1")" --trainer.logger false \
    --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/$SPLIT/$name" > "$OUT/$name.$SPLIT.log" 2>&1
  echo "finished $name (logs: $OUT/$name.log, $OUT/$name.$SPLIT.log)"
}
export -f label one_run

mkdir -p "$OUT"
sed 's/num_workers: 2/num_workers: 0/' configs/synthlong/test.yaml > "$OUT/test_inline.yaml"
for preset in $PRESETS; do  # other presets' and variants' runs stay
  if [ -z "$REUSE" ]; then rm -rf "$OUT/$preset${TAG:+_$TAG}"_seed*/; fi
  rm -rf "$OUT/$SPLIT/$preset${TAG:+_$TAG}"_seed*/
done
for preset in $PRESETS; do for seed in $SEEDS; do echo "$preset $seed"; done; done |
  xargs -P "$JOBS" -L 1 bash -c 'one_run "$@"' _

if [ "$SPLIT" = test ] && [ -f runs/demo/test/stage1/results.json ]; then  # the stage-1 row, for reference
  mkdir -p "$OUT/test/stage1" && cp runs/demo/test/stage1/results.json "$OUT/test/stage1/"
fi
$CLI report "$OUT/$SPLIT" --out "$OUT/results_$SPLIT.md"
$CLI report "$OUT/$SPLIT" --layout columns --out "$OUT/results_${SPLIT}_side_by_side.md" > /dev/null  # one column per model
