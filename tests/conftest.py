"""Root fixtures. Shared fixtures live in tests/support/ (one module per real component)."""

pytest_plugins = [
    "tests.support.audio",  # ffmpeg-made audio fixtures
    "tests.support.pg",  # a throwaway PostgreSQL database per test session
    "tests.support.gcs",  # gcp-storage-emulator, in-process
    "tests.support.httpserver",  # loopback HTTP server for downloads
    "tests.support.blackhole",  # a loopback listener that never answers (a dead storage)
    "tests.support.localstack",  # scripts/local-stack as a subprocess (e2e)
]


def pytest_configure(config: object) -> None:
    """No test touches the real per-user library (``~/.local/share/loist``, the default when
    ``LOIST_DATA_DIR`` is unset): the platform's data folder is a throwaway one for the whole run,
    subprocesses included (they inherit the environment)."""
    import os
    import tempfile

    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="loist-test-xdg-")
