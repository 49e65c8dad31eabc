"""Running exported generators (temporary home: the loader moves here from engine.export)."""
from doubledip.engine.export import load_exported  # noqa: F401
