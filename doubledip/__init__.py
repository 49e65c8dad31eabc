"""doubledip: Double-DIP unsupervised image decomposition (placeholder during bootstrap)."""
__version__ = "0.1.0"
