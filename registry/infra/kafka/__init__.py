"""Kafka plumbing: client factories, topics, the embedded broker, DLQs and the log follower.

This package is the strict point of cut-off for aiokafka: connection failures become
``BrokerUnavailable`` here, and the layers above see records, positions and the errors of
``registry.core.errors``.
"""
