"""``python -m cranialkit`` (also what ``torchrun -m cranialkit`` launches)."""

import sys

from cranialkit.cli import main

sys.exit(main())
