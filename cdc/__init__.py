"""cdc: change data capture and replication on Apache Kafka.

The engine (this package) knows no specific database: connectors in
``connectors/<db>/`` register through the ``cdc.connectors`` entry points.
"""

__version__ = "0.1.0"
