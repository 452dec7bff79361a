"""The service layer: one facade (``service.Library``) over the engines, and what runs on it.

Deliberately empty: ``bulk`` is preloaded into worker processes and must not pull in the catalog.
"""
