"""Download, verify and unpack SkullBreak, SkullFix or MUG500+ into the data directory.

    python data_scripts/download.py skullbreak            # → $CRANIALKIT_DATA_DIR/skullbreak (or ~/.cache/cranialkit)
    python data_scripts/download.py skullfix --root /data

Resumable (rerun after an interruption), verifies archive integrity, checksums where known and the expected
layout. The work is done by cranialkit.data.download (see its docstring for sources and what is verified); this
script is the same as ``cranialkit download``.
"""

from __future__ import annotations

import sys

from cranialkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["download", *sys.argv[1:]]))
