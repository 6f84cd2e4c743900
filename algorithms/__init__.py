"""Processing provider and algorithms: thin wrappers that call engine.api / engine.metrics."""
