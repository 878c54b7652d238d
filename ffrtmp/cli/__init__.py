"""The `ffrtmp` command: parsing only; the work happens in the library modules."""
