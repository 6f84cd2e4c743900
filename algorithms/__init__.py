"""Processing provider and algorithms: thin wrappers that call engine.codec / engine.metrics."""
