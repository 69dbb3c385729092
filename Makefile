# Two entry points that work on a fresh machine:
#   make demo   set up .venv, then condense real Fashion-MNIST with DC and DCC (quick preset)
#               and compare with a random real subset (8 min 55 s measured on 2 idle CPU cores, setup included)
#   make test   set up .venv, then run the test suite
#   make figures  regenerate the paper's figures (figures/) from the stored results (results/)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0

.PHONY: setup data demo test bench study figures clean-venv

setup: $(VENV)/.installed

# torch is installed first and pinned, so that pip never resolves a (multi-GB CUDA) torch on its own.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# The offline default dataset: Debian's dataset-fashion-mnist package, when apt is usable.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "note: could not install dataset-fashion-mnist; the loader will try to download Fashion-MNIST"; \
	fi

DEMO := study --dataset fashion-mnist --methods random,dc,dcc --ipc 1 --seeds 0 --out runs/demo

# Two one-thread shards share the 2 cores (faster than one two-thread process), then the table.
demo: setup data
	$(PY) -m condense $(DEMO) --threads 1 --shard 0/2 --no-progress & pid=$$!; \
	$(PY) -m condense $(DEMO) --threads 1 --shard 1/2; rc=$$?; \
	wait $$pid && [ $$rc = 0 ]
	$(PY) -m condense $(DEMO) --no-progress

test: setup data
	$(PY) -m pytest -q

bench: setup data
	$(PY) bench/bench_synthesis.py --quick

# The recorded quick-preset study of docs/results.md (resumable: rerun to continue).
study: setup data
	$(PY) -m condense study --dataset fashion-mnist --methods random,dc,dcc,dsa,dsac --ipc 1,10 --seeds 0,1,2 --out runs/study-fashion-mnist

# Every figure and table the package can produce, from results/ (runs the small warm-up ablation
# into runs/ only if it is not stored), then the kernel-velocity figures of the stored track run.
figures: setup
	$(PY) -m condense.figures --results results --runs runs --out figures
	$(PY) -m dynamics.figures results/track-fashion-mnist

clean-venv:
	rm -rf $(VENV)
