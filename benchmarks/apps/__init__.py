"""The benchmark applications: the same four endpoints for each interface (see ../README.md)."""
