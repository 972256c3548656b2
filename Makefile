# Two entry points a newcomer needs: `make demo` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch/torchvision pair installed into the venv (CPU or CUDA wheel, whichever the index serves).
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
DEMO_ARGS ?=

export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_MODE ?= offline
export HYDRA_FULL_ERROR ?= 0

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install $(TORCH_PIN)
	$(PY) -m pip install -e ".[dev,export,identity,video]"
	touch $(STAMP)

demo: install  ## DEMO_ARGS=--baselines adds CycleGAN and Toonify (a few minutes more)
	$(PY) -m dctnet.demo $(DEMO_ARGS)

test: install  ## one pytest worker per core (at most 4), one torch thread each: tests are mostly small serial ops
	$(PY) -m pytest -q -n auto --maxprocesses 4

bench: install  ## regenerates docs/performance.md (~40 min on 2 cores)
	$(PY) benchmarks/report.py

clean:
	rm -rf outputs data/synthetic .pytest_cache
