"""Redis: the book store collectors write and the detector reads (schema in schema.py)."""
