from adp.streams.kafka.broker.server import KAFKA_VERSION, BrokerError, KafkaCluster

__all__ = ["KAFKA_VERSION", "BrokerError", "KafkaCluster"]
