"""The web entry point: one Starlette app (``app.create_app``) serving ``/mcp`` and the public routes.

One module per concern: ``embed`` (player page), ``oembed``, ``stream`` (all byte serving, Range
handled there only), ``health``, ``auth`` (bearer token for ``/mcp``), ``cors``, ``security``
(framing and CSP headers), ``errors`` (the one error -> HTTP mapping), ``context`` (what every
route shares), ``admission`` (per-kind concurrency bounds, shedding past saturation), ``workers``
(several server processes on one port). Running it is :mod:`loist.serve`'s job (uvicorn for HTTP; stdio needs no web app).
"""
