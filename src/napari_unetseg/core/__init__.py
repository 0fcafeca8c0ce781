"""Pure compute: numpy and torch only. Never imports napari, Qt or magicgui."""
