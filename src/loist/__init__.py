"""Loist: a music library server for AI assistants (Music Library MCP)."""

__version__ = "0.1.0"
