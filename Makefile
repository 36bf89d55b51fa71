# cliptune: `make demo` and `make test` work from a fresh clone. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# -qq: pip prints only errors (this machine's extra local indexes make it warn about every package)
PIP_INSTALL := $(BIN)/python -m pip install -qq --disable-pip-version-check
# The Label Studio server for the bridge's integration tests, in its own venv: its pins (Django, pytz<2023,
# openai<2, ...) must stay out of .venv.
LS_VENV ?= .venv-labelstudio
LABEL_STUDIO_VERSION ?= 1.23.2
LS_STAMP := $(LS_VENV)/.installed-$(LABEL_STUDIO_VERSION)
SAMPLE ?= data/sample
DEMO ?= projects/demo

.PHONY: install labelstudio test test-fast demo browser lint bench constraints clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo "== installing into $(VENV) (torch and transformers make this take a few minutes the first time)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -c constraints.txt -e '.[train,dev]'
	@touch $(STAMP)

labelstudio: $(LS_STAMP)

$(LS_STAMP):
	@echo "== installing label-studio $(LABEL_STUDIO_VERSION) into $(LS_VENV) (about 80 s and 1 GB the first time)"
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -qq --disable-pip-version-check label-studio==$(LABEL_STUDIO_VERSION)
	@touch $(LS_STAMP)

# Debian's Chromium for the real-browser tests (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "== installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# The import layers (docs/architecture.md; contracts in pyproject.toml) first: a few seconds.
test: install browser labelstudio
	$(BIN)/lint-imports
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not browser"

lint: install
	$(BIN)/ruff check curation annotate_ui training tests data
	$(BIN)/lint-imports

# The sample project with people (ana, ben, cho, rev, lead; password cliptune-demo), assignments and simulated
# answers, then the app on http://127.0.0.1:8501 in the foreground (Ctrl+C stops it).
demo: install
	$(BIN)/cliptune demo $(DEMO) --sample $(SAMPLE) --clips 40

bench: install
	@for script in tests/bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

constraints: install
	{ echo "# Exact versions that cliptune is tested with (pip freeze of a fresh .venv). Regenerate with: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -vi '^cliptune'; } > constraints.txt

clean:
	rm -rf $(VENV) $(DEMO) $(SAMPLE) artifacts .pytest_cache .hypothesis
