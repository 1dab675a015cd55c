"""Single source of the package version (read by setup.py and written into provenance files)."""

__version__ = "0.1.0"
