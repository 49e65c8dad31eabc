"""The compiled C++ CPU core (not built yet)."""


def is_available() -> bool:
    """Whether the compiled CPU core is loaded."""
    return False
