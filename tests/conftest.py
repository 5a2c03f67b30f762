"""Test configuration: service fixtures come from tests/fixtures/services.py."""

from hypothesis import settings

pytest_plugins = ["tests.fixtures.services"]

# `make sanitize` runs the property tests on an ASan+UBSan build, several times
# slower per example: no per-example deadline there (--hypothesis-profile=sanitize).
settings.register_profile("sanitize", deadline=None)
