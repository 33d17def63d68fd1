"""The aggregator: the Faust app (`faust_app.py`) that turns adp.steps into trajectories on
adp.trajectories and writes them through a sink (`writer.py`). The assembly itself
(`assembly.py`) is pure and broker-free; replay calls it too."""
