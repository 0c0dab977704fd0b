# Thin wrappers around ./dev (which also works where make is not installed).
.PHONY: serve test lint bench setup
serve: ; ./dev serve
test: ; ./dev test
lint: ; ./dev lint
bench: ; ./dev bench
setup: ; ./dev setup
