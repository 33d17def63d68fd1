"""`adp console`: a web page showing progress, lag, live steps, trajectories and dead letters.

server.py serves the page (static/) and pushes updates; monitor.py reads the overview from the
broker, live_steps.py follows adp.steps, index.py lists the stored trajectories.
"""
