"""``python -m muxserver``: run the demo services (see :mod:`muxserver.cli`)."""

import sys

from muxserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
