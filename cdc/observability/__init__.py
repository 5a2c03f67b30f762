"""Logging, metrics and health for running pipelines."""
