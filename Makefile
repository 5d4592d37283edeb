# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install Tubemill, start the app on http://127.0.0.1:8501
#   make test   create .venv, install Tubemill with test tools and system packages, run the tests
# (`make doctor` checks the setup: yt-dlp and its JS runtime, ffmpeg, models, GPU, LLM endpoint, accounts.)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test sysdeps lint bench doctor

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tubemill app --address 127.0.0.1

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q

sysdeps:
	@bash .ci/sysdeps.sh

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/engine.py

doctor: $(STAMP)
	$(BIN)/tubemill doctor
