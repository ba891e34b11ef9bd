"""The row phase and the image phase with the cyclic garbage collector run less often.

A feed's row phase keeps hundreds of thousands of small objects alive until it ends (its
rows, the rows of their further pictures, the references to fetch), and every full
collection walks them all: with the default thresholds a 20k-row feed of 5 pictures a row
had six, a quarter of its row phase (0.6 s of about 2.4 s). Those objects hold no cycles
and the phase makes little cyclic garbage, so collecting less often costs no memory worth
counting. The thresholds are the process's: the first block in sets them, the last one out
sets them back, whatever threads overlap. The image phase keeps the items' cars alive
(a 100k-row feed: 500,000 places) and makes one small slot a place as it records them:
with the default thresholds, 2.1 of its 17.5 s went to the collections those set off.
"""

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FIRST_GENERATION = 20_000  # allocations between young collections (Python's default: 700)

_lock = threading.Lock()
_depth = 0
_previous: tuple[int, ...] = ()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect the youngest generation every FIRST_GENERATION allocations in the block
    (the older ones follow, as their thresholds count young collections)."""
    global _depth, _previous
    with _lock:
        if _depth == 0:
            _previous = gc.get_threshold()
            gc.set_threshold(max(FIRST_GENERATION, _previous[0]), *_previous[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_previous)
