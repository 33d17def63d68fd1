"""Floor 1: what every other part shares: settings, metrics, process management, the AIMD limit.
Imports nothing of the platform but adp.schemas."""
