"""The MCP edge: tools and resources over the library service (stdio and streamable HTTP).

Build a server with :func:`loist.mcp.server.create_mcp_server`; nothing is built at import time.
"""
