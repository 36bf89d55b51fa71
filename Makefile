# cliptune: `make demo` and `make test` work from a fresh clone. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# -qq: pip prints only errors (this machine's extra local indexes make it warn about every package)
PIP_INSTALL := $(BIN)/python -m pip install -qq --disable-pip-version-check
SAMPLE ?= data/sample
DEMO ?= projects/demo

.PHONY: install test test-fast demo browser lint bench constraints clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo "== installing into $(VENV) (torch and transformers make this take a few minutes the first time)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -c constraints.txt -e '.[train,dev]'
	@touch $(STAMP)

# Debian's Chromium for the real-browser tests (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "== installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

test: install browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not browser"

lint: install
	$(BIN)/ruff check curation annotate_ui training tests data

demo: install
	@test -f $(SAMPLE)/ground_truth.jsonl || $(BIN)/cliptune sample $(SAMPLE) --clips 40 --random-state 0
	@test -f $(DEMO)/cliptune.db || $(BIN)/cliptune init $(DEMO) --rubric surveillance_alert
	$(BIN)/cliptune ingest $(DEMO) $(SAMPLE)/clips --metadata $(SAMPLE)/cameras.csv --group-by camera
	$(BIN)/cliptune status $(DEMO)

bench: install
	@for script in tests/bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

constraints: install
	{ echo "# Exact versions that cliptune is tested with (pip freeze of a fresh .venv). Regenerate with: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -vi '^cliptune'; } > constraints.txt

clean:
	rm -rf $(VENV) $(DEMO) $(SAMPLE) artifacts .pytest_cache .hypothesis
