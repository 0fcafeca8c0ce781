"""``python -m napari_unetseg`` runs the ``unetseg`` command line."""

import sys

from napari_unetseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
