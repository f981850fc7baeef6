"""Built-in positional plugins."""
