# Two commands set everything up on a fresh machine:
#   make demo   # installs into .venv, then serves the Gradio demo on the bundled checkpoint
#   make test   # installs into .venv, then runs the test suite (what CI runs)
# TORCH picks the PyTorch build; the default is the CPU-friendly release this project is tested with.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test lint

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python app.py

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
