"""`gossiplab study`: assess the source paper's claims about DSGD-MGS from stored results.

A small package: :mod:`.stats` (paired intervals, per-seed slopes and exponents, verdicts),
:mod:`.common` (stores, selection, tables, figures, the verdict panel), :mod:`.regime` (where
decentralization costs: the regime map), :mod:`.claims` (the seven claims, a registry),
:mod:`.schemes` (gossip schemes and stability against the theory) and :mod:`.document`
(docs/study.md, its settings read from the sweep configs).
"""

from gossiplab.report.study.claims import CLAIMS
from gossiplab.report.study.document import build_study, synthesis
from gossiplab.report.study.schemes import _first_within, _schemes_reading, stability_section
from gossiplab.report.study.stats import (
    FAILS,
    HOLDS,
    NOT_RUN,
    UNSURE,
    Est,
    direction,
    paired,
    seed_slopes,
)

__all__ = ["CLAIMS", "FAILS", "HOLDS", "NOT_RUN", "UNSURE", "Est", "_first_within",
           "_schemes_reading", "build_study", "direction", "paired", "seed_slopes",
           "stability_section", "synthesis"]
