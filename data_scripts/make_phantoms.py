"""Generate a phantom dataset of any size and resolution (SkullBreak layout, NRRD with spacing).

    python data_scripts/make_phantoms.py --n-subjects 10 --resolution 64 --seed 0 [--out DIR] [--classes ...]

Resumable: an interrupted run continues where it stopped. Same as ``cranialkit make-phantoms``; the generator is
cranialkit.data.phantom.make_phantom_dataset.
"""

from __future__ import annotations

import sys

from cranialkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-phantoms", *sys.argv[1:]]))
