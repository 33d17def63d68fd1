"""Kafka plumbing, shared by every stage: the one client factory (`clients.py`), topic names and
configs (`topics.py`), admin and ACL helpers, bounded reads without a consumer group
(`reader.py`), the dead-letter contract (`dlq.py`) and the broker the project starts itself
(`broker/`). It sits below connectors and runtimes, so a sink may publish to a topic."""
