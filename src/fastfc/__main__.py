"""`python -m fastfc`: the same command line as the `fastfc` script."""
import sys

from .cli import main

sys.exit(main())
