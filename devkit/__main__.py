"""`python -m devkit …` — see devkit/cli.py."""

import sys

from devkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
