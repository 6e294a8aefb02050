# Quick start:  make demo   (venv + install + encode/decode a sample image with the shipped weights)
#               make test   (the test suite; what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_IMAGE ?= ../shared/data/images/kodak/kodim23.png
KODAK ?= ../shared/data/images/kodak

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e ".[test,bench]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) benchmarks/demo.py $(DEMO_IMAGE)
	$(PY) benchmarks/demo_climate.py

test: install
	$(VENV)/bin/ruff check codec tests benchmarks
	$(PY) -m pytest -n 2 tests

bench: install
	$(PY) benchmarks/kodak.py --images $(KODAK)
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/vqgan_kodak.py
	$(PY) benchmarks/recovery_kodak.py --limit 4

clean:
	rm -rf $(VENV) build *.egg-info demo-out
