# ksdiff — the two commands: `make demo` and `make test`.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
EXTRAS    ?= all
STAMP     := $(VENV)/.installed-$(EXTRAS)

.PHONY: install demo test e2e sysdeps clean

# System libraries (EGL/Mesa for headless rendering). Only runs apt-get when something is missing.
sysdeps:
	@bash scripts/sysdeps.sh

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@touch $(STAMP)
	@$(BIN)/python -m ksdiff.render.visibility   # one-time: the ICT head's visible triangles (cached)

install: $(STAMP)

demo: install
	$(BIN)/python -m ksdiff.demo

test: install
	$(BIN)/python -m pytest -q

# Browser test of `ksdiff serve` (installs Debian's chromium, then runs the serve tests with a screenshot).
e2e: install
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/python -m pytest -q tests/test_serve.py

clean:
	rm -rf $(VENV) build *.egg-info
