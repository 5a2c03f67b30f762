"""PostgreSQL source: pgoutput decoding, replication stream and snapshot readers."""
