"""Generation backends: one interface, several ways to reach a model (local weights, an API)."""
