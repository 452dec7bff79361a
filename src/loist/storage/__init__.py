"""Blob storage engine: one interface (``base.BlobStore``), a local folder and Google Cloud Storage."""
