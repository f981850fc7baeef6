"""Built-in probes plugins."""
