"""Rewrite the golden traces listed in specs.json (run only when a change of numerics is intended).

python tests/golden/regenerate.py              # rewrites tests/golden/*.json
python tests/golden/regenerate.py --out DIR    # writes them to DIR instead (to inspect or diff first)

The traces are checked on every machine by tests/test_golden_traces.py (a replay against each step's
rounding bounds, tests/conditioning.py), so they may be regenerated on any machine and BLAS kernel.
"""

import argparse
import json
import os

from ndereg_ref.oracle.trace import make_trace, save_trace

HERE = os.path.dirname(os.path.abspath(__file__))


def specs():
    with open(os.path.join(HERE, "specs.json")) as fh:
        return json.load(fh)["traces"]


def build(spec: dict) -> dict:
    kw = {k: v for k, v in spec.items() if k != "file"}
    return make_trace(**kw)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE, help="directory to write the traces to (default: here)")
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    for spec in specs():
        path = os.path.join(out, spec["file"])
        trace = build(spec)
        save_trace(trace, path)
        s = trace["summary"]
        print(
            f"{spec['file']:40s} {s['n_accepted']:4d} acc {s['n_rejected']:3d} rej {s['nfev']:5d} nfev "
            f"{os.path.getsize(path) / 1024:6.1f} KiB"
        )
