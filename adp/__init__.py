"""Agent Data Platform: tasks.jsonl -> Kafka -> agent runtimes -> step events -> trajectories.

One installed package whose subpackages are floors; a lower one never imports a higher one
(tests/test_layout.py checks it):

    adp.schemas     Avro schemas, their pydantic mirror (contracts) and the wire codec
    adp.core        settings, metrics, process management, the AIMD concurrency limit
    adp.connectors  the tasks.jsonl source and the trajectory sinks (file, S3)
    adp.runtimes    the agents (code, web, reasoning), their tools and the LLM client
    adp.streams     everything Kafka: broker, topics, producer, runtime worker, aggregator, ...
    adp             the application on top: the `adp` command line and the demo

This module imports nothing of the platform, so importing any floor costs nothing here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agent-data-platform")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
