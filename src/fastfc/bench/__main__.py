"""`python -m fastfc.bench ...`: the same as `fastfc bench ...`."""
import sys

from ..cli import main

sys.exit(main(["bench"] + sys.argv[1:]))
