"""Tests of the PostgreSQL connector."""
