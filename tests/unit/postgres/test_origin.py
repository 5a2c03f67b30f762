"""Loop prevention, PostgreSQL side, without a server: origin names and pgoutput options."""

from __future__ import annotations

from connectors.postgres.origin import origin_name, tag_of
from connectors.postgres.source.replication import StreamSettings


def test_origin_names_map_back_to_the_sink_tag() -> None:
    assert origin_name("node_a") == "cdc_node_a"
    assert origin_name("node_a", 3) == "cdc_node_a#3"
    for n in (1, 2, 64):
        assert tag_of(origin_name("a.b-c_d", n)) == "a.b-c_d"
    assert tag_of("pg_16384") == "pg_16384"  # a native subscription's origin: as is


def test_origin_none_only_when_skipping_on_a_server_that_filters() -> None:
    base = StreamSettings(slot="s", publication="p", proto_version=2)
    assert "origin" not in base.start_options()
    assert "origin" not in StreamSettings(slot="s", publication="p",
                                          skip_replicated=True).start_options()  # PG 15
    on = StreamSettings(slot="s", publication="p", skip_replicated=True, origin_filter=True)
    assert on.start_options().endswith("origin 'none'")
    off = StreamSettings(slot="s", publication="p", origin_filter=True)
    assert "origin" not in off.start_options()
