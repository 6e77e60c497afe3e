#!/usr/bin/env bash
# `make bench-quality`: each ablation of configs/synthlong/stage2.yaml (a --model.preset) over
# several seeds, all from one stage 1 (the demo's, copied first so that a demo run alongside cannot
# swap it), scored in-domain (SynthLong), cross-domain (SynthLongShifted) and on stage 1's short
# captions in both domains; then one table (mean ± std over seeds), stage 1 scored the same way.
# Two runs at a time, each with one thread and inline data loading (~1.7x the throughput of one
# run on 2 cores); runs go seed by seed (every preset at seed 0 first), so a run cut short still
# leaves whole seeds. Choose settings on val, report on test:
#   SPLIT=val PRESETS=full SEEDS="0 1 2" TAG=word0.1 EXTRA="--model.lambda_word 0.1" bash benchmarks/quality.sh
# TAG names a variant's runs (folder PRESET_TAG_seedN, row "MulCLIP (PRESET, TAG)"), so variants sit
# side by side in one table. REUSE=1 scores a run's existing last.ckpt instead of training it again.
# Budget knobs, the same for every arm (docs/EXPERIMENTS.md gives the ones its tables used):
#   EPOCHS=N  stage-2 epochs (default: the config's); LIMIT=B  test batches of 64 per set (default: all);
#   MIXED=false  leave out the top-1-of-N rows (10 more texts per image to encode);
#   WISE="1 0.5"  score each run as trained (1) and averaged with stage 1 at each other weight
#                 (`mulclip-pl wise-ft --alpha`, row "... + WiSE-FT 0.5"); WISE=1 skips the averages.
set -euo pipefail
export CLI=${CLI:-.venv/bin/mulclip-pl} OUT=${OUT:-runs/bench_quality} SPLIT=${SPLIT:-test} EXTRA=${EXTRA:-}
PRESETS=${PRESETS:-"global_only no_wpr full no_sap"}  # the arms the cross-domain question names first
SEEDS=${SEEDS:-"0 1 2"}
STAGE1=${STAGE1:-runs/demo/stage1/last.ckpt}
export TAG=${TAG:-} REUSE=${REUSE:-} EPOCHS=${EPOCHS:-} LIMIT=${LIMIT:-} MIXED=${MIXED:-true} WISE=${WISE:-"1 0.5"}
JOBS=${JOBS:-2}

label() {  # PRESET -> the table's row name
  local text
  case "$1" in
    global_only) text="Long-CLIP-style global (long + short)" ;;
    no_sap) text="MulCLIP without SAP" ;;
    no_wpr) text="MulCLIP without WPR" ;;
    stage1) text="stage 1: alt-text CLIP, 77 tokens" ;;
    *) text="MulCLIP ($1)" ;;
  esac
  echo "$text${TAG:+ [$TAG]}"
}

score() {  # CONFIG CKPT NAME LABEL [MODEL ARGS]: test (or validate) one checkpoint
  local subcommand=test eval_data=(--config "$OUT/test_inline.yaml")
  [ -n "$LIMIT" ] && eval_data+=(--trainer.limit_test_batches "$LIMIT")
  [ "$SPLIT" = val ] && subcommand=validate eval_data=(--data.init_args.num_workers 0)
  OMP_NUM_THREADS=1 $CLI $subcommand --config "$1" "${eval_data[@]}" --ckpt_path "$2" --run_name "$4" "${@:5}" \
    --trainer.logger false --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/$SPLIT/$3" \
    > "$OUT/$3.$SPLIT.log" 2>&1
}

one_run() {  # PRESET SEED: fit from stage 1, then score on $SPLIT; PRESET stage1 scores stage 1 itself
  local name="$1${TAG:+_$TAG}_seed$2" start=$SECONDS epochs=()
  [ -n "$EPOCHS" ] && epochs=(--trainer.max_epochs "$EPOCHS")
  if [ "$1" = stage1 ]; then
    score configs/synthlong/stage1.yaml "$OUT/stage1.ckpt" stage1 "$(label stage1)"
    echo -e "stage1\t$((SECONDS - start))" >> "$OUT/times.tsv"
    return
  fi
  if [ -n "$REUSE" ] && [ -f "$OUT/$name/last.ckpt" ]; then
    echo "reusing $OUT/$name/last.ckpt"
  else OMP_NUM_THREADS=1 $CLI fit --config configs/synthlong/stage2.yaml --model.preset "$1" --seed_everything "$2" \
    --model.init_from "$OUT/stage1.ckpt" --data.init_args.seed "$2" --data.init_args.num_workers 0 \
    --trainer.check_val_every_n_epoch 1000 "${epochs[@]}" \
    --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/$name" --checkpoint.dirpath "$OUT/$name" \
    --trainer.logger.init_args.save_dir "$OUT" --trainer.logger.init_args.version "$name" $EXTRA > "$OUT/$name.log" 2>&1
  fi
  local trained=$((SECONDS - start)) alpha
  for alpha in $WISE; do  # 1: the fine-tuned model itself; else its WiSE-FT average with stage 1
    if [ "$alpha" = 1 ]; then
      score configs/synthlong/stage2.yaml "$OUT/$name/last.ckpt" "$name" "$(label "$1")" --model.preset "$1"
    else
      $CLI wise-ft --ckpt "$OUT/$name/last.ckpt" --alpha "$alpha" --out "$OUT/$name/wise$alpha.ckpt" >> "$OUT/$name.log" 2>&1
      score configs/synthlong/stage2.yaml "$OUT/$name/wise$alpha.ckpt" "${name}_wise$alpha" \
        "$(label "$1") + WiSE-FT $alpha" --model.preset "$1"
    fi
  done
  echo -e "$name\t$trained\t$((SECONDS - start - trained))" >> "$OUT/times.tsv"
  echo "finished $name (logs: $OUT/$name.log, $OUT/$name.$SPLIT.log)"
}
export -f label score one_run

mkdir -p "$OUT"
[ -f "$OUT/stage1.ckpt" ] && cmp -s "$STAGE1" "$OUT/stage1.ckpt" || cp "$STAGE1" "$OUT/stage1.ckpt"
# Every hard-negative kind in both domains (the demo scores R@K and the one-attribute rows only).
sed -e 's/num_workers: 2/num_workers: 0/' -e 's/negative_kinds: false/negative_kinds: true/' configs/synthlong/test.yaml \
  > "$OUT/test_inline.yaml"
if [ "$MIXED" = true ]; then  # the demo's test calls leave the top-1-of-N rows out; the benchmark scores them
  sed -i 's/mixed_negatives: false/mixed_negatives: true/' "$OUT/test_inline.yaml"
fi
for preset in $PRESETS; do  # other presets' and variants' runs stay
  if [ -z "$REUSE" ]; then rm -rf "$OUT/$preset${TAG:+_$TAG}"_seed*/; fi
  rm -rf "$OUT/$SPLIT/$preset${TAG:+_$TAG}"_seed*/
done
jobs_list() {
  [ "$SPLIT" = test ] && [ -z "$TAG" ] && echo "stage1 -"
  for seed in $SEEDS; do for preset in $PRESETS; do echo "$preset $seed"; done; done
}
jobs_list | xargs -P "$JOBS" -L 1 bash -c 'one_run "$@"' _

$CLI report "$OUT/$SPLIT" --out "$OUT/results_$SPLIT.md"
echo "bench-quality: $((SECONDS / 60)) min $((SECONDS % 60)) s wall for $(jobs_list | wc -l) runs (times per run: $OUT/times.tsv)"
$CLI report "$OUT/$SPLIT" --layout columns --out "$OUT/results_${SPLIT}_side_by_side.md" > /dev/null  # one column per model
