"""The image pipeline's fetchers stay busy while its caller writes a batch (#26).

`ImagePipeline.run` is a generator: its caller (`run_items`, a chunk) writes each batch
of outcomes, a transaction and the pictures' files, in the generator's thread. The fetch
threads start the next fetch themselves, so downloads go on meanwhile; and they still
stop while the fetched-but-unrendered bytes reach RENDER_BACKLOG_BYTES, so a busy caller
does not make the importer hold the whole CSV's images. Real HTTP server, real fetches;
a dry-run pipeline (no render pool, no database), the caller's write a sleep.
"""

from __future__ import annotations

import time

from imports.pictures import pipeline as pipeline_module
from imports.pictures.pipeline import CarRef, ImageItem, ImagePipeline
from tests.support.httpserver import LocalHTTPServer
from tests.support.images import jpeg_bytes

JPEG = {"Content-Type": "image/jpeg"}
WORKERS = 4
LATENCY = 0.05
WRITE = 0.3  # seconds the caller spends on each outcome, as if it wrote a batch


def _items(server: LocalHTTPServer, count: int) -> list[ImageItem]:
    body = jpeg_bytes(64, 48)
    for i in range(count):
        server.add(f"/{i}.jpg", body, headers=JPEG, delay=LATENCY)
    return [ImageItem(server.url(f"/{i}.jpg"), (CarRef(i, i + 2, str(i)),)) for i in range(count)]


def test_fetches_go_on_while_the_caller_writes_a_batch():
    with LocalHTTPServer() as server:
        items = _items(server, 16)
        outcomes = []
        with ImagePipeline(base_dir=None, workers=WORKERS, store=False) as pipeline:
            for outcome in pipeline.run(items):
                outcomes.append(outcome)
                time.sleep(WRITE)
    assert len(outcomes) == 16 and not [o for o in outcomes if o.failure]
    # 16 fetches, 4 at a time: 4 rounds of 50 ms. Were the fetches started only when the
    # generator resumes, the window would hold about 12 of the caller's writes: 3.6 s.
    assert pipeline.window.seconds < 1.5


def test_fetchers_stop_at_the_backlog_while_the_caller_is_busy(monkeypatch):
    monkeypatch.setattr(pipeline_module, "RENDER_BACKLOG_BYTES", 1)
    with LocalHTTPServer() as server:
        items = _items(server, 16)
        outcomes, requested = [], []
        with ImagePipeline(base_dir=None, workers=WORKERS, store=False) as pipeline:
            for outcome in pipeline.run(items):
                outcomes.append(outcome)
                time.sleep(WRITE)
                requested.append(len(server.requests))
    assert len(outcomes) == 16 and not [o for o in outcomes if o.failure]
    # Held bytes stop the fetch threads: during the first write no fetch started beyond
    # the first round's, though each fetch takes a sixth of that write.
    assert requested[0] <= WORKERS
