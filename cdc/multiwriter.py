"""``cdc check`` for master-master pipelines: what can go wrong with several writers.

Two warnings, neither stops a pipeline (docs/MASTER-MASTER.md):

* two nodes that can generate the same key value for one table's column
  (sequences, identity or auto-increment columns with overlapping value
  sets): an insert on each node then collides (an ``insert_exists``
  conflict, one row lost) unless the nodes interleave (same step, different
  offsets) or use disjoint ranges;
* tables a node cannot replicate safely with several writers (a connector's
  own reasons, e.g. no full before-images).

Each connector reports its facts (:class:`cdc.spi.ChecksMultiWriter`); the
arithmetic, which needs no database, is here.
"""

from __future__ import annotations

import logging
from math import gcd

from cdc.config import CdcConfig
from cdc.config.problems import ConfigProblem, Loc
from cdc.registry import get_connector
from cdc.spi import ChecksMultiWriter, KeyGenerator

log = logging.getLogger(__name__)


def may_collide(a: KeyGenerator, b: KeyGenerator) -> bool:
    """Whether some value lies in both generators' value sets.

    ``v = a.residue (mod a.increment)`` and ``v = b.residue (mod b.increment)``
    have a common solution iff the residues agree modulo the gcd of the steps
    (Chinese remainder theorem); then the solutions are one residue class
    modulo the lcm, and one of them must fall in the ranges' intersection.
    """
    lo, hi = max(a.low, b.low), min(a.high, b.high)
    if lo > hi:
        return False
    g = gcd(a.increment, b.increment)
    if (a.residue - b.residue) % g:
        return False
    lcm = a.increment // g * b.increment
    # the smallest v >= lo in the common class: search a's class for b's residue
    for i in range(b.increment // g):
        v = a.residue + a.increment * i
        if (v - b.residue) % b.increment == 0:
            first = lo + (v - lo) % lcm
            return first <= hi
    return False  # unreachable when the residues agree modulo g


def multi_writer_warnings(config: CdcConfig) -> list[ConfigProblem]:
    """The warnings above, at each node's key (empty without ``master_master``)."""
    mm = config.master_master
    if mm is None:
        return []
    out: list[ConfigProblem] = []
    gens: list[tuple[int, str, KeyGenerator]] = []
    for j, node in enumerate(mm.nodes):
        loc: Loc = ("master_master", "nodes", j)
        cfg = config.source(node.name)
        try:
            source = get_connector(cfg.kind).create_source(cfg, name=cfg.name)
        except Exception as e:  # reported by the source's own check already
            log.debug("%s: no source: %s", node.name, e)
            continue
        try:
            if not isinstance(source, ChecksMultiWriter):
                continue
            try:
                gens += [(j, node.name, g) for g in source.key_generators()]
                out += [ConfigProblem((*loc, p.key) if p.key else loc, " ".join(p.what.split()),
                                      p.fix, warning=True)
                        for p in source.multi_writer_problems()]
            except Exception as e:  # unreachable: the source check says so
                log.debug("%s: multi-writer facts unknown: %s", node.name, e)
        finally:
            try:
                source.close()
            except Exception as e:
                log.debug("%s: close failed: %s", node.name, e)
    for x, (_, name, a) in enumerate(gens):
        for k, other, b in gens[x + 1:]:
            if name == other or a.table != b.table or a.column != b.column:
                continue
            if may_collide(a, b):
                out.append(ConfigProblem(
                    ("master_master", "nodes", k),
                    f"nodes {name} and {other} can both generate {a.table}.{a.column} values "
                    f"({name}: {a.what}, next {a.low}; {other}: {b.what}, next {b.low}): an "
                    "insert on each may create the same key",
                    f"give each node its own offset with one common step (e.g. step "
                    f"{len(mm.nodes)}, offsets 1..{len(mm.nodes)}), or disjoint ranges "
                    "(START/MINVALUE/MAXVALUE per node); or generate keys in the application "
                    "(UUIDs)",
                    warning=True))
    return out
