"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py."""
pytest_plugins = ["tests.fixtures.redis", "tests.fixtures.gateway", "tests.fixtures.upstream", "tests.fixtures.hardening"]
