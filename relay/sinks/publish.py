"""One AMQP publish, marshalled cheaply: aiormq's ``basic_publish`` minus pamqp's
generic marshalling (issue 20).

Where it sits: :meth:`relay.sinks.amqp.AmqpSink.send` publishes each event with
:func:`publish` on the session's aiormq channel. aiormq's ``Channel.basic_publish``
builds a ``Basic.Publish`` and a ``ContentHeader`` per message and marshals them with
pamqp's generic code, which looks every field's AMQP type up by name and dispatches per
value: about 30 µs of a 200 µs event on the 2-core bench machine, the largest single
piece of the relay's own publish path.

Here the three frames are the same bytes, built from pamqp's own encoders, with less
work per message:

- the ``Basic.Publish`` method frame depends only on the channel, the exchange and the
  routing key: marshalled once per such triple (a bounded cache), by pamqp;
- the properties are a :class:`WireProperties`, a ``Basic.Properties`` whose ``marshal``
  walks a table of (name, flag, encoder) computed once from pamqp's definitions, and
  keeps the encodings of the short strings that repeat (content type, event type, app
  id);
- the content header and body frames are packed as pamqp's ``frame.marshal`` packs
  them, without its type dispatch.

Everything else is aiormq's ``basic_publish(mandatory=True, wait=False)``, step for
step and on aiormq's own channel state: the channel lock, the delivery tag, the confirm
future registered with the channel (so a channel or connection close rejects it as it
would aiormq's), the message id kept for a ``Basic.Return`` (an unroutable message is a
``PublishError``), the roll-back of a publish cancelled before it was queued, and the
conversion of a close-time cancellation into the close's reason. In the usual case
(nobody holds the channel lock, the writer's queue has room) the lock's critical
section is taken as the one synchronous step it would be (:func:`_queue_now`).
``pyproject.toml`` pins aiormq below 8; ``tests/sinks/test_sinks_publish.py`` checks
the bytes against aiormq's
and the confirm, return and close paths against the real broker.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Callable
from random import getrandbits
from typing import Any
from uuid import UUID

import aiormq
from aiormq.abc import ChannelFrame
from pamqp import commands, encode, frame
from pamqp.constants import FRAME_BODY, FRAME_END_CHAR, FRAME_HEADER

__all__ = ["WireProperties", "frames", "publish"]

_Properties = commands.Basic.Properties

# Short strings repeat (content type, event type, app id): their encodings are kept, a
# bounded few. Message ids do not repeat; they cost a cache miss, not a growing cache.
_short_string = functools.lru_cache(maxsize=1024)(encode.short_string)


def _encoder(name: str) -> Callable[[Any], bytes]:
    amqp_type = getattr(_Properties, "_" + name)
    return _short_string if amqp_type == "shortstr" else encode.METHODS[amqp_type]


# (attribute, flag bit, pamqp's encoder for its AMQP type), in pamqp's marshalling order.
_FIELDS: tuple[tuple[str, int, Callable[[Any], bytes]], ...] = tuple(
    (name, _Properties.flags[name], _encoder(name)) for name in _Properties.__slots__
)
# Every flag fits in the first 16-bit flag word (bit 0 would say "another word follows").
assert all(flag < 0x10000 and not flag & 1 for _, flag, _ in _FIELDS)
_FLAGS = struct.Struct(">H")


class WireProperties(_Properties):
    """``Basic.Properties`` with a fast :meth:`marshal`: the same bytes as pamqp's."""

    def marshal(self) -> bytes:
        flags = 0
        parts: list[bytes] = []
        for name, flag, encoder in _FIELDS:
            value = getattr(self, name)
            if value is not None and value != "":
                flags |= flag
                parts.append(encoder(value))
        return _FLAGS.pack(flags) + b"".join(parts)


@functools.lru_cache(maxsize=4096)
def _publish_frame(channel: int, exchange: str, routing_key: str) -> bytes:
    method = commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True)
    return frame.marshal(method, channel)


def frames(
    channel: int,
    body: bytes,
    *,
    exchange: str,
    routing_key: str,
    properties: _Properties,
    max_content_size: int,
) -> bytes:
    """The wire bytes of one mandatory publish: what aiormq's ``basic_publish`` hands
    its writer for the same arguments (``ChannelFrame.marshall`` of its frames)."""
    header = _CONTENT_HEADER.pack(_BASIC, len(body)) + properties.marshal()
    parts = [
        _publish_frame(channel, exchange, routing_key),
        _FRAME.pack(FRAME_HEADER, channel, len(header)),
        header,
        FRAME_END_CHAR,
    ]
    if body:
        if len(body) < max_content_size:
            parts += (_FRAME.pack(FRAME_BODY, channel, len(body)), body, FRAME_END_CHAR)
        else:  # aiormq's split: chunks of max_content_size, the last one shorter
            for start in range(0, len(body), max_content_size):
                chunk = body[start : start + max_content_size]
                parts += (_FRAME.pack(FRAME_BODY, channel, len(chunk)), chunk, FRAME_END_CHAR)
    return b"".join(parts)


# pamqp's frame layout (frame._marshal, ContentHeader.marshal): type, channel, size,
# payload, end octet; a content header's payload is class id, weight 0, body size, then
# the properties.
_FRAME = struct.Struct(">BHI")
_CONTENT_HEADER = struct.Struct(">HxxQ")
_BASIC = commands.Basic.frame_id


async def publish(
    channel: aiormq.Channel,
    body: bytes,
    *,
    exchange: str,
    routing_key: str,
    properties: _Properties,
) -> None:
    """``channel.basic_publish(body, ..., mandatory=True, wait=False)``, answered when
    the broker confirms: raises as it would (``PublishError`` for a returned message,
    ``DeliveryError`` for a nack, the close's reason for a closed channel)."""
    if len(routing_key) > 255:
        raise ValueError("Routing key too long (max 255 bytes)")
    if not properties.message_id:  # as aiormq does: a Basic.Return is matched by it
        properties.message_id = UUID(int=getrandbits(128), version=4).hex
    message_id = properties.message_id
    payload = frames(
        channel.number,
        body,
        exchange=exchange,
        routing_key=routing_key,
        properties=properties,
        max_content_size=channel.max_content_size,
    )
    queued = _queue_now(channel, payload, message_id)
    if queued is not None:  # the usual case: queued without a suspension
        confirmation, delivery_tag = queued
        if confirmation is not None:
            await _confirmed(channel, confirmation, message_id, delivery_tag)
        return
    confirmation = None
    async with channel._raise_on_channel_close():
        async with channel.lock:
            channel.delivery_tag += 1
            delivery_tag = channel.delivery_tag
            sent = False
            try:
                if channel.publisher_confirms:
                    confirmation = channel.create_future()
                    channel.confirmations[delivery_tag] = confirmation
                    channel.message_id_delivery_tag[message_id] = delivery_tag
                await channel.write_queue.put(ChannelFrame(payload=payload, should_close=False))
                sent = True
            except BaseException:
                if not sent:
                    # The broker has not seen this publish: its sequence number is reused.
                    channel.delivery_tag -= 1
                    channel.confirmations.pop(delivery_tag, None)
                    if channel.message_id_delivery_tag.get(message_id) == delivery_tag:
                        channel.message_id_delivery_tag.pop(message_id)
                    if confirmation is not None:
                        confirmation.cancel()
                raise
        if confirmation is not None:
            await _confirmed(channel, confirmation, message_id, delivery_tag)


def _queue_now(
    channel: aiormq.Channel, payload: bytes, message_id: str
) -> tuple[asyncio.Future[Any] | None, int] | None:
    """Queue the publish at once when nothing can make it wait: nobody holds the channel
    lock and the writer's queue has room. Taking the lock, queueing and letting it go
    would then be one step with no suspension (no other task runs in between), so it is
    done as one, without the lock's round trip or an ``await`` on the queue: about 5 µs
    of a publish (issue 20). The confirm future and its delivery tag, as aiormq's way
    makes them; None when the caller must take aiormq's way, lock and all.

    aiormq's ``_raise_on_channel_close`` is left out here: it turns the cancellation a
    channel's close gives its *consumer* tasks into the close's reason, and the relay
    never publishes from one of those (a close rejects the confirm future, which raises
    the reason here as there).
    """
    if _channel_lock(channel).locked() or channel.write_queue.full():
        return None
    if channel.is_closed:  # what channel.lock raises
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
    channel.delivery_tag += 1
    delivery_tag = channel.delivery_tag
    confirmation: asyncio.Future[Any] | None = None
    if channel.publisher_confirms:
        confirmation = channel.create_future()
        channel.confirmations[delivery_tag] = confirmation
        channel.message_id_delivery_tag[message_id] = delivery_tag
    channel.write_queue.put_nowait(ChannelFrame(payload=payload, should_close=False))
    return confirmation, delivery_tag


def _channel_lock(channel: aiormq.Channel) -> asyncio.Lock:
    """The lock behind aiormq's ``Channel.lock`` (a private attribute: aiormq is pinned
    below 8, and tests/sinks/test_sinks_publish.py checks it is still there)."""
    lock: asyncio.Lock = channel._Channel__lock  # type: ignore[attr-defined]
    return lock


async def _confirmed(
    channel: aiormq.Channel, confirmation: asyncio.Future[Any], message_id: str, tag: int
) -> None:
    try:
        await confirmation
    finally:  # aiormq forgets it in a done callback: one loop callback more
        if channel.message_id_delivery_tag.get(message_id) == tag:
            channel.message_id_delivery_tag.pop(message_id)
