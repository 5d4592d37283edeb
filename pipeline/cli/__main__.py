"""``python -m pipeline.cli``: the same entry point as the ``tubemill`` script."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
