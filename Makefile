# The two commands the README starts with. Both set up a fresh machine first (scripts/bootstrap).
.PHONY: serve test lint bench-ingest bench-search bench-http

# A development server on this machine: it may fetch from loopback and private addresses (the
# audio `loist smoke` serves from 127.0.0.1, a file on your own network); `loist serve` alone does not.
serve:
	@scripts/bootstrap
	ALLOW_PRIVATE_URLS=$${ALLOW_PRIVATE_URLS:-true} .venv/bin/loist serve

test:
	@scripts/bootstrap --test
	.venv/bin/python -m pytest -n 2 --dist loadgroup -q

lint:
	@scripts/bootstrap --test
	.venv/bin/ruff check src tests bench loadtest
	scripts/scan offline

bench-ingest:
	.venv/bin/python bench/ingest.py

bench-search:
	.venv/bin/python bench/search.py

bench-http:
	.venv/bin/python bench/http_load.py
