# mulclip-pl: `make demo` installs and runs the embedded default; `make test` runs the test suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench-quality bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest tests

demo: install
	$(BIN)/python -m mulclip_pl.demo

bench-quality: install
	$(BIN)/python -m mulclip_pl.demo --variants global_only no_sap no_wpr full --seeds 0 1 2 --jobs 2 --out runs/bench_quality --stage1 runs/demo/stage1_short_clip.pt

bench: install
	$(BIN)/python benchmarks/train_step.py --model mulclip-tiny --batch-size 32

clean:
	rm -rf runs lightning_logs .pytest_cache
