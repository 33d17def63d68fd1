"""Floor 0: the platform's records. Avro schemas (*.avsc) are the source of truth, with every
released version kept in history/v<N>/; contracts.py mirrors them as pydantic models and codec.py
puts them on the wire (and resolves older versions to the current one)."""
