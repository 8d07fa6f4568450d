# Two set-up commands on a fresh machine (see README):  `make demo`  and  `make test`.
# Both create or reuse .venv/ at the repo root and install the project into it first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch must come BEFORE the other packages, or pip fetches a multi-GB CUDA build from the index.
# These versions lie on local disk on the project machines (torchvision is needed by nerfstudio).
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
else
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
endif

.PHONY: install demo test bench train-demo browser

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/splatdiff-demo --output-dir outputs/demo

# Train the demo checkpoint from scratch (stage 1, stage 2, slim copy into checkpoints/demo): the commands that
# trained the shipped checkpoint (about 1 hour on 2 CPU cores; see README).
VAR_STEPS ?= 1000
DIFFUSION_STEPS ?= 1500
TRAIN := $(VENV)/bin/ns-train
TRAIN_FLAGS := --vis tensorboard --output-dir outputs/train-demo --experiment-name demo --timestamp run
train-demo: install
	test -f data/procedural/procedural/frame_annotations.jgz || $(VENV)/bin/splatdiff-make-procedural \
		--output data/procedural --scenes 200 --views 24 --resolution 128 --seed 0 --workers 2
	$(TRAIN) splatdiff-var-small --max-num-iterations $(VAR_STEPS) $(TRAIN_FLAGS) co3d-data --data data/procedural
	$(TRAIN) splatdiff-diffusion-small --max-num-iterations $(DIFFUSION_STEPS) $(TRAIN_FLAGS) \
		--pipeline.model.var-checkpoint outputs/train-demo/demo/splatdiff-var-small/run/config.yml co3d-data --data data/procedural
	$(VENV)/bin/splatdiff-slim-run --load-config outputs/train-demo/demo/splatdiff-diffusion-small/run/config.yml \
		--output-dir checkpoints --experiment-name demo --data data/demo

# The viewer test drives a real browser (Debian's chromium); without root to install it, that one test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: the browser test will skip"

test: install browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/render.py --json benchmarks/results/render_cpu.json
