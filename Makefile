# One command each, on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test bench clean

demo: $(STAMP)
	$(BIN)/maskwatch demo --out demo-out

test: $(STAMP)
	bash .ci/services.sh  # PostgreSQL for the store tests: started (installed on Debian) when missing, else its tests skip
	$(BIN)/python -m pytest -n 2 --dist loadfile  # two workers, a test file each: most tests wait on services, not on a core

bench: $(STAMP)
	$(BIN)/python bench/tracker_speed.py
	$(BIN)/python bench/pipeline_speed.py
	$(BIN)/python bench/analytics_speed.py
	$(BIN)/python bench/store_speed.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) demo-out out
