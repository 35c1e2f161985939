"""Process-wide tuning of an ingest process: the garbage collector.

Applied by the process entry point (:meth:`IngestService.run_until_signalled`), not by
library objects, so tests and embedding programs keep their own collector settings.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Container allocations between two collections of the youngest generation."""


def tune_garbage_collector() -> None:
    """Freeze what exists at start-up and collect young objects far less often.

    Converting one event allocates dozens of short-lived containers, all freed by
    reference counting. With CPython's default threshold (700) a young collection ran every
    couple of dozen events, and the older generations' collections walked the occurrence
    table (up to a million facts, several containers each) again and again: measured on
    one process, the collector was more than half of the cost of recording a new fact.
    Cyclic garbage is still collected, in rarer and larger passes.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 10)
