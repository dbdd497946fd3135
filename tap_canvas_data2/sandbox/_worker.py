"""Child process of ``encoders._write_parallel``: encode the given ``part:lo:hi`` id ranges.

Run as ``python -m tap_canvas_data2.sandbox._worker JOB_PICKLE PART:LO:HI ...``.
"""

from __future__ import annotations

import pickle
import sys

from .encoders import _write_range


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as f:
        plan, gen, table, columns, fmt, mode, out_dir, rows_per_object = pickle.load(f)
    for spec in argv[1:]:
        part, lo, hi = (int(x) for x in spec.split(":"))
        _write_range(plan, gen, table, columns, fmt, mode, out_dir, rows_per_object, lo, hi,
                     part)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
