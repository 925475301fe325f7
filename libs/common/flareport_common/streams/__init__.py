"""Stream runtime: producer and consumer-group loop (see ``consumer`` for the reasoning)."""

from flareport_common.streams.consumer import ConsumerConfig, Delivery, Handler, StreamConsumer
from flareport_common.streams.consumerset import ConsumerSet
from flareport_common.streams.producer import Producer

__all__ = ["ConsumerConfig", "ConsumerSet", "Delivery", "Handler", "Producer", "StreamConsumer"]
