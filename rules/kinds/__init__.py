"""One module per rule kind; each is registered in :mod:`rules.registry`."""
