# make demo : set up .venv, generate synthetic metaphases, train a small model on CPU,
#             evaluate it and draw its predictions into output/demo/.
# make test : set up .venv, check formatting and lint, run the test suite (what .ci/run calls).
# make cil  : the CPU recipe on the real CIL metaphases (~2.5 h on 2 cores; docs/cil.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The real CIL images, when they lie beside the repository (as in CI).
CIL24  ?= $(wildcard ../shared/data/cil24)

.PHONY: install test lint demo cil datasets clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

datasets:
	@if [ -n "$(CIL24)" ] && [ ! -e datasets/cil24 ]; then \
		ln -s "$$(cd $(CIL24) && pwd)" datasets/cil24 && echo "linked datasets/cil24 -> $(CIL24)"; fi

test: install datasets lint
	$(PY) -m pytest tests -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: install datasets
	$(PY) tools/demo.py

cil: install datasets
	$(PY) tools/cil_recipe.py $(CIL_ARGS)

clean:
	rm -rf output
