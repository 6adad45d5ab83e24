"""Issue 24, hole 7: what odd input costs an ingest (docs/performance.md "Odd input").

``python bench/odd_input.py N``: (a) one batch of N distinct unknown device models in a
fresh process (the detector's first use), then, warm, a batch of N models the process
has seen (known) and one of N it has not (new), three times in turn: issue 28 asks
new ≤ 2x known; (b) one batch of events on N distinct days (1971..9998), then a later
one-event ingest of an earlier day, with the state files it writes. ``python bench/odd_input.py N a``: (a) only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from userportrait.ingest.pipeline import ingest_file
from userportrait.settings import Settings
from userportrait.store.lake import Lake


def _batch(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def main(n: int, steps: str = "ab") -> None:
    rnd = random.Random(7)
    root = Path(tempfile.mkdtemp())
    lake = Lake(dataclasses.replace(Settings(), data_dir=root / "data"))
    chars = string.ascii_uppercase + string.digits

    def model_batch(models: list[str], tag: str) -> list[dict[str, Any]]:
        return [
            {
                "appid": "wxa000000000000001",
                "openid": f"o{tag}{i}",
                "ts": "2026-12-01T10:00:00+08:00",
                "model": model,
            }
            for i, model in enumerate(models)
        ]

    def random_models() -> list[str]:
        return ["".join(rnd.choice(chars) for _ in range(8)) for _ in range(n)]

    def timed(models: list[str], tag: str) -> float:
        t = time.time()
        ingest_file(lake, _batch(root / f"{tag}.ndjson", model_batch(models, tag)))
        return time.time() - t

    first = random_models()
    took = timed(first, "a")
    sys.stdout.write(f"(a) {n} distinct models, first in the process: {took:.2f}s\n")
    # Known and new batches in turn, 3 of each (the machine is shared: medians).
    known, new = [], []
    for r in range(3):
        known.append(timed(first, f"k{r}"))
        new.append(timed(random_models(), f"n{r}"))
    for what, times in (("known models (seen by the process)", known), ("new models", new)):
        each = ", ".join(f"{x:.2f}" for x in times)
        sys.stdout.write(f"(a) {n} {what}, warm: median {statistics.median(times):.2f}s ({each})\n")
    sys.stdout.write(f"(a) new / known: {statistics.median(new) / statistics.median(known):.2f}\n")
    if "b" not in steps:
        return
    epoch = dt.date(1970, 1, 1)
    picked = rnd.sample(
        range((dt.date(1971, 1, 1) - epoch).days, (dt.date(9998, 1, 1) - epoch).days), n
    )
    days = [
        {
            "appid": "wxa000000000000002",
            "openid": f"o{i}",
            "ts": f"{epoch + dt.timedelta(k)}T10:00:00+08:00",
        }
        for i, k in enumerate(picked)
    ]
    t = time.time()
    ingest_file(lake, _batch(root / "b.ndjson", days))
    sys.stdout.write(f"(b) {n} distinct days, first ingest: {time.time() - t:.1f}s\n")
    before = {p for p in lake.state_dir.rglob("*") if p.is_file()}
    late = [{"appid": "wxa000000000000002", "openid": "late", "ts": "2026-12-06T10:00:00+08:00"}]
    t = time.time()
    ingest_file(lake, _batch(root / "c.ndjson", late))
    elapsed = time.time() - t
    after = {p for p in lake.state_dir.rglob("*") if p.is_file()}
    sys.stdout.write(
        f"(b) later one-event ingest: {elapsed:.1f}s, state files written: "
        f"{len(after - before)}, total {len(after)}\n"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300, *sys.argv[2:3])
