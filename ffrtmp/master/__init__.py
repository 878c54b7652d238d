"""The coordinator: one ROUTER socket, a SQLite store, a pure scheduler and pure recovery rules."""
