"""Floor 0: the platform's records. Avro schemas (*.avsc) are the source of truth; contracts.py
mirrors them as pydantic models and codec.py puts them on the wire."""
