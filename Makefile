.PHONY: install demo test check bench docs reliability

install:
	./scripts/install

demo:
	./scripts/demo

test:
	./scripts/test

check:
	./scripts/check

bench:
	./scripts/install && ./scripts/bench-tools && .venv/bin/python benchmarks/compare.py

docs:
	./scripts/install && NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict

reliability:
	./scripts/install && .venv/bin/python benchmarks/reliability.py
