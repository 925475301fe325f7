"""Stream runtime: producer and consumer-group loop (see ``consumer`` for the reasoning)."""

from flareport_common.streams.consumer import ConsumerConfig, Delivery, Handler, StreamConsumer
from flareport_common.streams.producer import DEFAULT_MAXLEN, Producer

__all__ = ["DEFAULT_MAXLEN", "ConsumerConfig", "Delivery", "Handler", "Producer", "StreamConsumer"]
