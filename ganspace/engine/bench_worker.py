"""A timing worker for ``bench --against``: one process generating with the ``ganspace`` of a
given source tree, timed on request.

It is run by :func:`ganspace.engine.benchmark.compare_trees` as
``python -c "<sys.path.insert(0, TREE)>; runpy.run_path(this file)" CONFIG_JSON``, so
``import ganspace`` finds TREE's package, and it uses only the public API every version since
the package restructure offers (``random_model``, ``ganspace.formats.load_model``,
``GANSynthModel.generate``); nothing in this file imports this tree's ``ganspace`` at the top.

Protocol on stdin/stdout, one line each: after loading and one warm-up call it prints
``ready <path of the ganspace package>``; then every ``time`` line is answered by the seconds
of one ``generate`` call (z to audio, a batch of ``batch`` notes); ``quit`` ends it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main(config: dict[str, Any]) -> None:
    """Serve timing requests for the model described by ``config`` (keys ``model`` (folder or
    None), ``random`` (size or None), ``device``, ``precision``, ``threads``, ``batch``, and
    optionally ``compile``, a torch.compile mode)."""
    import torch

    import ganspace

    torch.set_num_threads(int(config["threads"]))
    kw: dict[str, Any] = {"device": config["device"]}
    if config["precision"] != "float32":  # older trees have no precision argument to spare
        kw["precision"] = config["precision"]
    if config["random"]:
        from ganspace.engine.model import random_model

        model = random_model(config["random"], **kw)
    else:
        from ganspace.formats import load_model

        model = load_model(config["model"], **kw)
    if config.get("compile"):
        model.compile(config["compile"])
    b = int(config["batch"])
    z = model.random_z(b, seed=b)
    pitches = [model.pitches[i % len(model.pitches)] for i in range(b)]
    model.batch_size = max(model.batch_size, b)
    model.generate(z, pitches)
    print("ready", ganspace.__file__, flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            break
        t0 = time.perf_counter()
        model.generate(z, pitches)
        print(time.perf_counter() - t0, flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
