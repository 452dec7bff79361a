"""Migration scripts, numbered ``0001``, ``0002``, ... (revision id == file-name prefix)."""
