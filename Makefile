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

.PHONY: install demo test bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/splatdiff-render-demo --output-dir outputs/demo

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/render.py --json benchmarks/results/render_cpu.json
