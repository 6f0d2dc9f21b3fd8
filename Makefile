# Two commands a new user needs: `make run` (the app) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run serve test bench bench-api bench-search load clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

# Loopback only by default (without sign-in anyone who reaches it sees everything). `make run ADDRESS=0.0.0.0`
# exposes it on purpose; turn sign-in on first (README, Sign-in).
ADDRESS ?= 127.0.0.1
run: $(STAMP)
	$(BIN)/python -m streamlit run ui/Home.py --server.address $(ADDRESS)

serve: $(STAMP)
	$(BIN)/python -m server

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.storage $(BENCH_ARGS)

bench-api: $(STAMP)
	$(BIN)/python -m bench.api --start-postgres $(BENCH_API_ARGS)

bench-search: $(STAMP)
	$(BIN)/python -m bench.search $(BENCH_SEARCH_ARGS)

load: $(STAMP)
	$(BIN)/python -m bench.load $(LOAD_ARGS)

clean:
	rm -rf $(VENV) artifacts
