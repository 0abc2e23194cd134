"""Media: reading, fetching and decoding untrusted image bytes."""
