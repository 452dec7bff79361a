"""Shared test fixtures (audio)."""
