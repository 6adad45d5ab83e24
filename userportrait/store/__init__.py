"""The event lake and its catalog (see docs/storage.md for the layout)."""
