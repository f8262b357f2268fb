"""slimkit: make trained PyTorch models smaller and faster, and measure it honestly."""

__version__ = "0.1.0"
