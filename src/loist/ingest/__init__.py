"""The ingest engine: fetch audio safely, recognise it from its bytes and read what it holds.

Modules: ``netguard`` (which URLs may be fetched), ``fetch`` (download to a file), ``sniff``
(format from magic bytes), ``analyze`` (hash, technical properties, tags, artwork thumbnail),
``tags`` (per-tag-family readers), ``sources`` (URL / file / folder inputs). It stores nothing:
the library service hands the results to the storage and catalog engines.
"""
