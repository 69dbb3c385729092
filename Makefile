# Two entry points that work on a fresh machine:
#   make demo   set up .venv, then condense real Fashion-MNIST with DC and DCC (quick preset)
#               and compare with a random real subset (8 min 55 s on 2 idle CPU cores, setup included, measured
#               before the compiled passes became the default)
#   make test   set up .venv, then run the test suite
#   make figures  regenerate the paper's figures (figures/) from the stored results (results/)
#   make lab    set up .venv with JupyterLab, register the kernel "condense" and open notebooks/
#               (prints the URL with its token; IP=0.0.0.0 PORT=9999 make lab to change where it listens)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0

.PHONY: setup lab-setup lab data demo test bench study studies-paper-loops figures clean-venv

setup: $(VENV)/.installed

# torch is installed first and pinned, so that pip never resolves a (multi-GB CUDA) torch on its own.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# The notebook extra on top of setup, and a kernel named after the project inside .venv (--sys-prefix:
# the venv's jupyter finds it, nothing is written to ~/.local/share/jupyter). Its own stamp file.
lab-setup: $(VENV)/.installed-lab

$(VENV)/.installed-lab: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[notebooks]"
	$(PY) -m ipykernel install --sys-prefix --name condense --display-name "condense (.venv)"
	touch $@

# JupyterLab on notebooks/, local only by default; it prints http://127.0.0.1:PORT/lab?token=...
# (a busy PORT moves to the next free one). Stop it with Ctrl-C twice.
# As root (containers, CI) jupyter refuses to start without --allow-root; it is added then.
IP   ?= 127.0.0.1
PORT ?= 8888
lab: lab-setup data
	$(VENV)/bin/jupyter lab --no-browser --ServerApp.ip=$(IP) --ServerApp.port=$(PORT) --ServerApp.root_dir=notebooks$(if $(filter 0,$(shell id -u)), --allow-root)

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

# Issue 12's studies at the paper's loop sizes (fp32, real batch 256, 3 seeds; docs/results.md):
# each as two one-thread shards, then the kernels of its sets. Resumable: rerun to continue, finished
# cells and tracked units are skipped. Hours on 2 CPU cores (upper ≈ 2.8 h, 40it ≈ 3 h, each track 25–35 min).
STUDY_UPPER := study --dataset fashion-mnist-upper --methods dc,dcc --ipc 10 --seeds 0,1,2 --preset-prefix '' \
	--set iterations=20 --set outer_warmup=5 --set eval_at=0,20 --set evaluation.num_networks=5 --set checkpoint_every=1 \
	--offline --out results/study-fashion-mnist-upper-paper-loops
STUDY_40IT := study --dataset fashion-mnist --methods dc,dcc --ipc 1 --seeds 0,1,2 --preset-prefix '' \
	--set iterations=40 --set outer_warmup=10 --set inner_warmup=10 --set eval_at=0,40 --set evaluation.num_networks=5 \
	--set checkpoint_every=1 --offline --out results/study-fashion-mnist-40it

studies-paper-loops: setup data
	$(PY) -m condense $(STUDY_UPPER) --threads 1 --shard 0/2 --no-progress & pid=$$!; \
	$(PY) -m condense $(STUDY_UPPER) --threads 1 --shard 1/2; rc=$$?; wait $$pid && [ $$rc = 0 ]
	$(PY) -m dynamics.track --run fashion-mnist-upper-paper-loops --out results/track-fashion-mnist-upper-paper-loops \
		--reuse-study results/study-fashion-mnist-upper-paper-loops --threads 2 --offline --no-figures
	$(PY) -m condense $(STUDY_40IT) --threads 1 --shard 0/2 --no-progress & pid=$$!; \
	$(PY) -m condense $(STUDY_40IT) --threads 1 --shard 1/2; rc=$$?; wait $$pid && [ $$rc = 0 ]
	$(PY) -m dynamics.track --run fashion-mnist-40it --out results/track-fashion-mnist-40it \
		--reuse-study results/study-fashion-mnist-40it --threads 2 --offline --no-figures

# Every figure and table the package can produce, from results/ (runs the small warm-up ablation
# into runs/ only if it is not stored), then the kernel figures of every stored track run (results/track-*).
figures: setup
	$(PY) -m condense.figures --results results --runs runs --out figures
	for run in results/track-*/; do if [ -f "$$run/dynamics.csv" ]; then $(PY) -m dynamics.figures "$$run" --out "figures/$$(basename $$run)" || exit 1; fi; done

clean-venv:
	rm -rf $(VENV)
