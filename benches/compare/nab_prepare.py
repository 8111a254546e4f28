#!/usr/bin/env python3
"""Prepares a NAB folder for benches/compare/nab_replay.sh: every data file windows.json names,
optionally keeping only every EVERY-th row, and each file's median sampling interval.

Usage: nab_prepare.py SRC_DIR DST_DIR [EVERY [MIXED]]

Writes DST_DIR/windows.json (the same windows: they are time ranges, so they hold whichever rows
are kept) and DST_DIR/<key> for every key of it, then prints one line per file,
`<key>\t<median interval in whole seconds>`. EVERY = 1 (the default) copies the rows unchanged;
12 turns 5-minute files into hourly ones, to see how a config does at a step it was not tuned
at. MIXED = 1 resamples only the files of odd index (keys sorted) and copies the others, a
corpus of two steps scored with one threshold, as a corpus of real files is. The first data row
is always kept. Standard library only.
"""

import json
import os
import statistics
import sys
from datetime import datetime


def seconds(cell):
    """A NAB timestamp (`2014-02-14 14:30:00`, or ISO 8601 with a `T`) as Unix seconds."""
    return datetime.fromisoformat(cell.strip().replace("T", " ")).timestamp()


def main():
    if len(sys.argv) not in (3, 4, 5):
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    every = int(sys.argv[3]) if len(sys.argv) >= 4 else 1
    mixed = len(sys.argv) == 5 and sys.argv[4] == "1"
    if every < 1:
        sys.exit("EVERY must be at least 1")
    with open(os.path.join(src, "windows.json"), encoding="utf-8") as f:
        windows = json.load(f)
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "windows.json"), "w", encoding="utf-8") as f:
        json.dump(windows, f)
    for index, key in enumerate(sorted(windows)):
        with open(os.path.join(src, key), encoding="utf-8") as f:
            header, *rows = [line for line in f.read().splitlines() if line.strip()]
        kept = rows if mixed and index % 2 == 0 else rows[::every]
        out = os.path.join(dst, key)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            f.write("\n".join([header, *kept]) + "\n")
        times = [seconds(row.split(",", 1)[0]) for row in kept]
        gaps = [b - a for a, b in zip(times, times[1:])]
        median = round(statistics.median(gaps)) if gaps else 300
        print(f"{key}\t{max(median, 1)}")


if __name__ == "__main__":
    main()
