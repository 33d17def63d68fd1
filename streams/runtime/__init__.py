"""The runtime worker: a consumer group member that takes tasks from the priority lanes of
adp.tasks.<type>, runs each as an Attempt of a runtime (adp.runtimes) and puts its step events
on adp.steps. `worker.py` is the loop; `progress.py` owns what each partition has started,
finished and may commit; the rest are the small decisions it delegates (lanes, intake, offsets,
commits, poison)."""
