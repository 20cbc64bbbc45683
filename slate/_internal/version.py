"""The library version (``slate.__version__``), here so that modules recording it in their
outputs (sweep results) need not import the package root, which names every subpackage."""

VERSION = "0.1.0"
