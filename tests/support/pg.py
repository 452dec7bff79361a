"""Shared test fixtures (pg)."""
