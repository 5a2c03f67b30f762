"""deploy/local/connect.py and its Maven pom agree (issue #15: Debezium in the loop)."""

from __future__ import annotations

import re

from tests.fixtures.debezium import ROOT, connect_module


def test_pom_and_script_agree_on_versions_and_profiles() -> None:
    pom = (ROOT / "deploy/local/connect/pom.xml").read_text()
    mod = connect_module()
    m = re.search(r"<connect.version>([^<]+)</connect.version>", pom)
    assert m and m.group(1) == mod.CONNECT_VERSION
    profiles = set(re.findall(r"<profile>\s*<id>([^<]+)</id>", pom))
    assert profiles == {"worker", *mod.PLUGINS}
    # Every plugin folder leaves out the worker's own Kafka, SLF4J and Jackson jars.
    assert "org.apache.kafka,org.slf4j,com.fasterxml.jackson.core" in pom


def test_converter_settings_give_confluent_framing() -> None:
    conv = connect_module().ConnectWorker.avro_converters(registry_port=1234)
    for side in ("key", "value"):
        assert conv[f"{side}.converter"] == "io.apicurio.registry.utils.converter.AvroConverter"
        assert conv[f"{side}.converter.apicurio.registry.url"] == \
            "http://127.0.0.1:1234/apis/registry/v2"
        assert conv[f"{side}.converter.apicurio.registry.use-id"] == "contentId"
        assert conv[f"{side}.converter.apicurio.registry.headers.enabled"] == "false"
