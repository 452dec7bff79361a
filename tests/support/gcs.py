"""Shared test fixtures (gcs)."""
