"""Rewrite the golden traces listed in specs.json (run only when a change of numerics is intended).

python tests/golden/regenerate.py
"""

import json
import os

from ndereg_ref.oracle import make_trace, save_trace

HERE = os.path.dirname(os.path.abspath(__file__))


def specs():
    with open(os.path.join(HERE, "specs.json")) as fh:
        return json.load(fh)["traces"]


def build(spec: dict) -> dict:
    kw = {k: v for k, v in spec.items() if k != "file"}
    return make_trace(**kw)


if __name__ == "__main__":
    for spec in specs():
        path = os.path.join(HERE, spec["file"])
        trace = build(spec)
        save_trace(trace, path)
        s = trace["summary"]
        print(
            f"{spec['file']:40s} {s['n_accepted']:4d} acc {s['n_rejected']:3d} rej {s['nfev']:5d} nfev "
            f"{os.path.getsize(path) / 1024:6.1f} KiB"
        )
