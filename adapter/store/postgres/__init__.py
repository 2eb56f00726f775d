"""The PostgreSQL store, for many replicas: the store, its schema and the fleet-wide limiter."""
