"""Order books: sorted exact-string L2 sides, checksums, and integrity errors."""
