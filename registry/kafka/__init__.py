"""Kafka plumbing: topic names and creation, client factories, the embedded broker."""

from registry.kafka.topics import TOPICS, TopicSpec, ensure_topics
from registry.kafka.clients import make_consumer, make_producer, read_until_caught_up

__all__ = ["TOPICS", "TopicSpec", "ensure_topics", "make_consumer", "make_producer", "read_until_caught_up"]
