# make demo : set up .venv, generate synthetic metaphases, train a small model on CPU,
#             evaluate it and draw its predictions into output/demo/.
# make test : set up .venv, check formatting and lint, run the test suite (what .ci/run calls).
# make test-fast : the suite without the slow end-to-end tests, for a developer's loop.
# make cil  : the CPU recipe on the real CIL metaphases (~2.5 h on 2 cores; docs/cil.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The real CIL images, when they lie beside the repository (as in CI).
CIL24  ?= $(wildcard ../shared/data/cil24)

.PHONY: install test test-fast lint demo cil datasets browser clean

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

# Debian's chromium and chromium-driver, for the review page's browser test: installed where
# missing when apt-get runs as root; elsewhere that test is skipped and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium and chromium-driver (apt-get)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null) || echo "browser: apt-get failed; the \
			browser test will be skipped"; \
	else echo "browser: no chromium/chromedriver and no apt-get as root; the browser test \
		will be skipped"; fi

test: install datasets lint browser
	$(PY) -m pytest tests -q

test-fast: install datasets
	$(PY) -m pytest tests -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: install datasets
	$(PY) tools/demo.py

cil: install datasets
	$(PY) tools/cil_recipe.py $(CIL_ARGS)

clean:
	rm -rf output
