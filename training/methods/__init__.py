"""One module per method: how its targets are made from a weak label kind, its loss, its decoder."""
