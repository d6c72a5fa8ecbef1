"""Per-customer rolling windows in Redis: key layout, the atomic update script, the store."""
