"""Shared test fixtures (httpserver)."""
