# Two entry points: `make demo` and `make test`. Both create .venv when missing and install
# the project with every extra under constraints.txt (pinned versions; torch 2.13.0).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[train,dev,cluster]"
	@# onnxruntime and onnxruntime-gpu overwrite each other's files: refuse a mixed install.
	@if $(BIN)/python -m pip show onnxruntime >/dev/null 2>&1; then \
		echo "error: plain 'onnxruntime' got installed beside onnxruntime-gpu; remove it"; exit 1; fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/nwwatch demo demo_output

# The labelling page's and the dashboard's tests drive a real headless browser: Debian's
# chromium and chromedriver (nothing downloaded at test time), through tests/webdriver.py.
# Installed here when missing and we are root; otherwise the browser tests fail and name this
# command.
browser:
	@if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium chromium-driver; \
		else echo "warning: chromium/chromedriver missing; as root: apt-get install -y chromium chromium-driver"; fi; \
	fi

# Two pytest-xdist workers, each taking whole test files (module fixtures are built once and a
# file's tests keep their order): most tests wait on real processes, so two run in about half
# the time on 2 cores.
test: $(STAMP) browser
	$(BIN)/ruff check nwwatch training tests bench
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) demo_output bench/out
