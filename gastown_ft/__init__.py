"""gastown-ft: a Gas Town town in, a Gas Town agent model out."""

__version__ = "0.1.0"
