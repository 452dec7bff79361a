"""Root fixtures. Shared fixtures live in tests/support/ (one module per real component)."""

pytest_plugins = [
    "tests.support.audio",  # ffmpeg-made audio fixtures
    "tests.support.pg",  # a throwaway PostgreSQL database per test session
    "tests.support.gcs",  # gcp-storage-emulator, in-process
    "tests.support.httpserver",  # loopback HTTP server for downloads
    "tests.support.blackhole",  # a loopback listener that never answers (a dead storage)
    "tests.support.localstack",  # scripts/local-stack as a subprocess (e2e)
]
