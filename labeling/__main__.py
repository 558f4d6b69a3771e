"""`python -m labeling …` — see labeling/cli.py."""

import sys

from labeling.cli import main

if __name__ == "__main__":
    sys.exit(main())
