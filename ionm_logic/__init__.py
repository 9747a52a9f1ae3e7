"""ionm-logic: decide and explain the medical necessity of IONM service lines."""
__version__ = "0.1.0"
