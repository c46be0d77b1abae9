"""Built-in check types. Each module is one type and registers itself through ``register_checks``."""
