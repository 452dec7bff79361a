# The two commands the README starts with. Both set up a fresh machine first (scripts/bootstrap).
.PHONY: serve test lint bench-ingest bench-search bench-http

serve:
	@scripts/bootstrap
	.venv/bin/loist serve

test:
	@scripts/bootstrap --test
	.venv/bin/python -m pytest -n 2 --dist loadgroup -q

lint:
	@scripts/bootstrap --test
	.venv/bin/ruff check src tests bench loadtest
	.venv/bin/bandit -q -r src -c pyproject.toml

bench-ingest:
	.venv/bin/python bench/ingest.py

bench-search:
	.venv/bin/python bench/search.py

bench-http:
	.venv/bin/python bench/http_load.py
