"""Recreate the packaged NAS-Bench-201 table from its plain CSV.

Usage::

    python benchmarks/tools/pack_nb201.py /path/to/nb201_hp12.csv

The output is written to ``src/nasflow/benchmarks/data/nb201_hp12.csv.gz``. The gzip header carries
no timestamp or file name, so the same CSV gives the same bytes on the same zlib build. When the
printed SHA-256 differs from ``NB201_SHA256`` in ``nasflow.benchmarks.nb201``, the CSV (or the zlib
used) has changed: check the data, then update that constant.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[2] / "src" / "nasflow" / "benchmarks" / "data" / "nb201_hp12.csv.gz"


def pack(csv_bytes: bytes) -> bytes:
    """Deterministic gzip: fixed level and mtime=0 so rebuilding is byte-identical."""
    return gzip.compress(csv_bytes, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the plain nb201_hp12.csv")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default: {OUTPUT})")
    args = parser.parse_args(argv)

    packed = pack(args.source.read_bytes())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(packed)

    # Structural validation reuses the runtime loader so a bad CSV never gets shipped.
    from nasflow.benchmarks.nb201 import load_nb201

    table = load_nb201(args.output)
    print(f"wrote {args.output} ({len(packed):,} bytes, {len(table):,} rows)")
    print(f"sha256 {hashlib.sha256(packed).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
