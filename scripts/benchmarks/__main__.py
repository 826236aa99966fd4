"""python -m scripts.benchmarks, from the repository root: what scripts/bench runs."""

import sys

from scripts.benchmarks.runner import main

sys.exit(main())
