.PHONY: install demo test check bench

install:
	./scripts/install

demo:
	./scripts/demo

test:
	./scripts/test

check:
	./scripts/check

bench:
	./scripts/install && .venv/bin/python benchmarks/run.py
