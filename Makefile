# ksdiff — the two commands: `make demo` and `make test`.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
EXTRAS    ?= all
STAMP     := $(VENV)/.installed-$(EXTRAS)

.PHONY: install demo test e2e sysdeps browser clean

# System libraries (EGL/Mesa for headless rendering). Only runs apt-get when something is missing.
sysdeps:
	@bash scripts/sysdeps.sh

# The same plus Debian's chromium, for the browser test of `ksdiff serve` (tests/test_serve.py).
browser:
	@bash scripts/sysdeps.sh --browser

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@touch $(STAMP)
	@$(BIN)/python -m ksdiff.render.visibility   # one-time: the ICT head's visible triangles (cached)

install: $(STAMP)

demo: install
	$(BIN)/python -m ksdiff.demo

# The browser test must run here, not skip: KSDIFF_REQUIRE_BROWSER=1 turns a missing chromium into a failure
# (KSDIFF_REQUIRE_BROWSER=0 make test to skip it on a machine where you cannot install chromium).
test: install browser
	KSDIFF_REQUIRE_BROWSER=$${KSDIFF_REQUIRE_BROWSER:-1} $(BIN)/python -m pytest -q

# Only the serve tests, browser included.
e2e: install browser
	KSDIFF_REQUIRE_BROWSER=$${KSDIFF_REQUIRE_BROWSER:-1} $(BIN)/python -m pytest -q tests/test_serve.py

clean:
	rm -rf $(VENV) build *.egg-info
