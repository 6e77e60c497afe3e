# mulclip-pl: `make demo` installs and runs the embedded default; `make test` runs the test suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLI := $(BIN)/mulclip-pl
STAMP := $(VENV)/.installed
DEMO := runs/demo

.PHONY: install test demo bench-quality notebook bench fingerprint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest tests

# The demo is ordinary CLI calls (fit stage 1, fit stage 2, test each, test stage 2's WiSE-FT average with
# stage 1: mulclip-pl wise-ft) plus a summary table.
# Stage 1 trains on short alt text in both domains' words and looks (data/synthlong/web.py); the test
# calls score SynthLong's test split, its cross-domain set and the short-caption sets (configs/synthlong/test.yaml).
# Stage 1 is reused while its config is unchanged; delete runs/demo/stage1 to train it again.
demo: install $(DEMO)/stage1/last.ckpt
	rm -rf $(DEMO)/stage2 $(DEMO)/test
	$(CLI) fit --config configs/synthlong/stage2.yaml
	$(CLI) test --config configs/synthlong/stage1.yaml --config configs/synthlong/test.yaml \
		--ckpt_path $(DEMO)/stage1/last.ckpt --run_name "stage 1: alt-text CLIP, 77 tokens" \
		--trainer.logger false --trainer.default_root_dir $(DEMO)/test/stage1
	$(CLI) test --config configs/synthlong/stage2.yaml --config configs/synthlong/test.yaml \
		--ckpt_path $(DEMO)/stage2/last.ckpt --run_name "MulCLIP (full)" \
		--trainer.logger false --trainer.default_root_dir $(DEMO)/test/stage2
	$(CLI) wise-ft --ckpt $(DEMO)/stage2/last.ckpt --alpha 0.5 --out $(DEMO)/stage2/wise0.5.ckpt
	$(CLI) test --config configs/synthlong/stage2.yaml --config configs/synthlong/test.yaml \
		--ckpt_path $(DEMO)/stage2/wise0.5.ckpt --run_name "MulCLIP (full) + WiSE-FT 0.5" \
		--trainer.logger false --trainer.default_root_dir $(DEMO)/test/wise
	$(CLI) report $(DEMO)/test --out $(DEMO)/results.md

$(DEMO)/stage1/last.ckpt: configs/synthlong/stage1.yaml | $(STAMP)
	rm -rf $(DEMO)/stage1
	$(CLI) fit --config configs/synthlong/stage1.yaml

# Long-CLIP-style global / without WPR / without SAP / full over 3 seeds from the demo's stage 1, scored
# in-domain and cross-domain on the full test sets with the demo's stage-2 schedule; it prints its wall time.
# Budget knobs for a quick look, e.g. `make bench-quality BENCH="EPOCHS=2 LIMIT=8 MIXED=false"`
# (docs/EXPERIMENTS.md says which settings each table used).
BENCH ?=
bench-quality: install $(DEMO)/stage1/last.ckpt
	$(BENCH) bash benchmarks/quality.sh

# Re-executes notebooks/attention_maps.ipynb in place, outputs and figures included, from the demo's
# checkpoints (and the benchmark's global-only seed 0 where it exists): run after `make demo`.
notebook: install
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace notebooks/attention_maps.ipynb

# Short stage-1 / stage-2 fits, a test call and an export; one digest of weights, losses and metrics.
# Run before and after a change that should change nothing: on one machine the digests must be equal.
fingerprint: install
	$(BIN)/python benchmarks/fingerprint.py --out runs/fingerprint

bench: install
	$(BIN)/python benchmarks/train_step.py --model mulclip-tiny --batch-size 32

clean:
	rm -rf runs lightning_logs .pytest_cache
