"""Database connectors, each registered under the ``cdc.connectors`` entry-point group.

The engine (``cdc``) never imports these packages by name: it finds them
through :mod:`cdc.registry`. Each ``connectors/<db>`` package exposes one
``CONNECTOR`` object implementing :class:`cdc.spi.Connector`.
"""
