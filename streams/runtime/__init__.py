"""The runtime worker: a consumer group member that takes tasks from the priority lanes of
adp.tasks.<type>, runs each as an Attempt of a runtime (adp.runtimes) and puts its step events
on adp.steps. `worker.py` is the loop; `progress.py` owns what each partition has started,
finished and may commit; `handler.py` what becomes of one started task; the rest are the small
decisions they delegate (lanes, intake, offsets, commits, poison) and the watch (/health, lag)."""
