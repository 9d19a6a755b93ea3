#!/usr/bin/env python3
"""Figures per source: our import readers against independent parsers on ../shared/real-inputs.

Not a test (tests/test_real_inputs_parity.py asserts the same figures). Run from the checkout:

    .venv/bin/python bench/real_inputs.py            # the table
    .venv/bin/python bench/real_inputs.py --details  # and every field lost, file not imported
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_real_inputs_parity as parity  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="list lost fields and shortfalls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as where:
        results = parity.survey(Path(where))
    print(parity.table(results))
    if args.details:
        for r in results:
            if r.imported < r.expected:
                print(f"{r.name}: imported {r.imported} of {r.expected} well-formed entries")
            for line in r.lost + r.tracebacks:
                print(line)


if __name__ == "__main__":
    main()
