# `make run` and `make test` set up .venv on first use (offline except for PyPI).
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: run test test-slow lint format bench clean

$(VENV_STAMP): pyproject.toml constraints.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(VENV_STAMP)

run: $(VENV_STAMP)
	.venv/bin/slimkit compress --out slimkit-out

test: $(VENV_STAMP)
	$(PY) -m pytest -q

test-slow: $(VENV_STAMP)
	$(PY) -m pytest -q -m slow

lint: $(VENV_STAMP)
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: $(VENV_STAMP)
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

clean:
	rm -rf .venv build src/*.egg-info .pytest_cache .ruff_cache
