"""The HTTP layer: routes translate requests into domain calls and back."""
