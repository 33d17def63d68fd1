"""Read-only tools over the topics and the stored trajectories: replay (rebuild trajectory files
from adp.steps or adp.trajectories), tail (follow live steps), status (per task type counts) and
the stored-trajectory source of `adp export` and `adp verify`. None joins a consumer group."""
