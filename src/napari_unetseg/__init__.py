"""napari-unetseg: paint a few strokes, train a U-Net, segment whole stacks.

The package root stays light on purpose: it imports neither Qt nor torch, so that
napari start-up and the reader do not pay for them.
"""

__version__ = "0.1.0"
