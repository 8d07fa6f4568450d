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
	$(VENV)/bin/splatdiff-demo --modes shape --output-dir outputs/demo-shape

# Train the shipped checkpoint from scratch on the proving ground (data, the privileged-view VAR, the two baselines,
# the diffusion model, slim copies into checkpoints/demo). Running it again resumes every stage from its newest
# checkpoint; steps via VAR_STEPS, BASELINE_STEPS, DIFFUSION_STEPS (see benchmarks/train_demo.sh and the README).
train-demo: install
	bash benchmarks/train_demo.sh all

# The viewer test drives a real browser (Debian's chromium); without root to install it, that one test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: the browser test will skip"

# Style first (ruff: format + lint, line length 120, pyproject.toml), then the suite with annotations checked at run
# time (tests/conftest.py: jaxtyping + beartype).
test: install browser
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra -n 2 --dist loadfile

bench: install
	$(PY) benchmarks/render.py --json benchmarks/results/render_cpu.json
