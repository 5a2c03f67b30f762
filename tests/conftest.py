"""Test configuration: service fixtures come from tests/fixtures/services.py."""

pytest_plugins = ["tests.fixtures.services"]
