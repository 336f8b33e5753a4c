"""``python -m geobert.cli``: the ``geobert`` command."""

import sys

from geobert.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
