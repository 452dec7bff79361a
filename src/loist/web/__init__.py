"""The web entry point: one Starlette app (``app.create_app``) serving ``/mcp`` and the public routes.

One module per concern: ``embed`` (player page), ``oembed``, ``stream`` (all byte serving, Range
handled there only), ``health``, ``auth`` (bearer token for ``/mcp``), ``cors``, ``security``
(framing and CSP headers), ``errors`` (the one error -> HTTP mapping), ``serve`` (``loist serve``).
"""
