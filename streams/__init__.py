"""Everything on Kafka, in the order the data flows:

producer.py   tasks.jsonl -> adp.tasks.<type>[.high|.low]
runtime/      the consumer groups adp-runtime-<type>: tasks -> step events on adp.steps
aggregator/   the Faust app: adp.steps -> adp.trajectories -> sinks (connectors/sinks)
synthesis/    a consumer group on adp.trajectories: verified trajectories -> new tasks (lineage)
inspection/   read-only: replay, tail, status, stored trajectories for export and verify
kafka/        the plumbing all of them share: clients, topics, admin, ACLs, the broker
"""
