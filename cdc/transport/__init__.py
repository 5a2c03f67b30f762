"""Kafka transport: idempotent producer with delivery tracking, topics, consumers."""
