"""End-to-end scenarios with pika (python3-pika, /usr/bin/python3) against the
real broker, including crashes: order decoupling across a kill -9 (publish with
no consumer, crash, restart, every order consumed exactly once, acked ones never
come back); kill -9 with deliveries outstanding (exactly the unacked messages
come back, the delivered ones with redelivered set); publisher confirms for
100,000 persistent messages, pipelined, within a time bound, surviving a kill -9."""

import time

import pika
import pytest

ORDERS = 1000


def persistent(**kw):
    return pika.BasicProperties(delivery_mode=2, **kw)


def message_count(ch, queue):
    """Ready messages of a durable queue (a passive queue.declare round trip)."""
    return ch.queue_declare(queue, durable=True, passive=True).method.message_count


def publish_confirmed(ch, queue, bodies):
    """Publishes persistent messages on a confirm channel; each basic_publish waits
    for its basic.ack (pika raises NackError / UnroutableError otherwise)."""
    for body in bodies:
        ch.basic_publish("", queue, body, persistent(), mandatory=True)


def consume_acking(conn, ch, queue, want, timeout=20.0, prefetch=100):
    """Consumes with manual acks until want messages came and then nothing for
    0.5 s (or timeout); returns [(method, body)] in delivery order."""
    got = []
    ch.basic_qos(prefetch_count=prefetch)

    def on_message(c, method, props, body):
        got.append((method, body))
        c.basic_ack(method.delivery_tag)

    tag = ch.basic_consume(queue, on_message, auto_ack=False)
    deadline = time.monotonic() + timeout
    quiet_until = None
    while time.monotonic() < deadline:
        before = len(got)
        conn.process_data_events(time_limit=0.1)
        if len(got) >= want:
            if len(got) != before or quiet_until is None:
                quiet_until = time.monotonic() + 0.5
            elif time.monotonic() >= quiet_until:
                break
    ch.basic_cancel(tag)
    return got


def test_order_decoupling_survives_kill9(amqp_factory, pika_connect):
    """Publish 1,000 orders while no consumer exists, crash the broker, restart:
    every order is consumed exactly once; after a second crash none comes back."""
    broker = amqp_factory().start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.queue_declare("orders", durable=True)
    ch.confirm_delivery()
    orders = [b'{"order": %d, "item": "sku-%d"}' % (i, i % 37) for i in range(ORDERS)]
    publish_confirmed(ch, "orders", orders)
    assert message_count(ch, "orders") == ORDERS

    broker.kill9()
    broker.start()

    conn = pika_connect(broker)
    ch = conn.channel()
    assert message_count(ch, "orders") == ORDERS
    got = consume_acking(conn, ch, "orders", ORDERS)
    bodies = [body for _, body in got]
    assert len(bodies) == len(set(bodies)), "an order was delivered twice"
    assert set(bodies) == set(orders), (
        f"missing {len(set(orders) - set(bodies))}, unexpected {len(set(bodies) - set(orders))}")
    assert bodies == orders, "orders left the queue out of publish order"
    assert not any(m.redelivered for m, _ in got), "never-delivered orders marked redelivered"
    assert message_count(ch, "orders") == 0  # a round trip after the last ack
    conn.close()

    broker.kill9()
    broker.start()
    conn = pika_connect(broker)
    ch = conn.channel()
    assert message_count(ch, "orders") == 0, "acked orders came back after a crash"
    assert ch.basic_get("orders", auto_ack=True) == (None, None, None)


def test_kill9_with_unacked_deliveries(amqp_factory, pika_connect):
    """200 confirmed; 150 delivered to a consumer, 100 of them acked; crash:
    exactly the other 100 come back, the 50 delivered ones with redelivered set."""
    broker = amqp_factory().start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.queue_declare("work", durable=True)
    ch.confirm_delivery()
    bodies = [b"m-%03d" % i for i in range(200)]
    publish_confirmed(ch, "work", bodies)

    # prefetch 150: the broker delivers exactly 150 and then waits for credit.
    ch.basic_qos(prefetch_count=150)
    got = []
    tag = ch.basic_consume("work", lambda c, m, p, b: got.append((m, b)), auto_ack=False)
    deadline = time.monotonic() + 10
    while len(got) < 150 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    conn.process_data_events(time_limit=0.3)  # nothing beyond the prefetch window
    assert [b for _, b in got] == bodies[:150]
    ch.basic_cancel(tag)  # no more deliveries; the 150 stay unacked on the channel
    for m, _ in got[:100]:
        ch.basic_ack(m.delivery_tag)
    # Synchronous round trips on the same channel, after the acks.
    ch.basic_qos(prefetch_count=10)
    assert message_count(ch, "work") == 50  # the 50 never delivered

    broker.kill9()
    broker.start()

    conn = pika_connect(broker)
    ch = conn.channel()
    assert message_count(ch, "work") == 100
    back = consume_acking(conn, ch, "work", 100)
    back_bodies = [b for _, b in back]
    assert len(back_bodies) == len(set(back_bodies)), "a message came back twice"
    assert set(back_bodies) == set(bodies[100:]), (
        f"missing {sorted(set(bodies[100:]) - set(back_bodies))[:10]}, "
        f"acked but back {sorted(set(back_bodies) - set(bodies[100:]))[:10]}")
    redelivered = {b for m, b in back if m.redelivered}
    assert redelivered == set(bodies[100:150]), (
        f"redelivered flags wrong: set on {sorted(redelivered - set(bodies[100:150]))[:5]}, "
        f"missing on {sorted(set(bodies[100:150]) - redelivered)[:5]}")
    assert message_count(ch, "work") == 0


class PipelinedConfirmPublisher:
    """Publishes n persistent messages on a pika SelectConnection confirm channel,
    keeping up to `window` unconfirmed, and counts basic.ack / basic.nack per
    delivery tag (multiple acks expanded). Every wait is bounded by `timeout`."""

    def __init__(self, port, queue, n, window=5000, timeout=90.0):
        self.queue, self.n, self.window, self.timeout = queue, n, window, timeout
        self.params = pika.ConnectionParameters("127.0.0.1", port, connection_attempts=1,
                                                socket_timeout=5, heartbeat=0)
        self.published = 0
        self.acked = 0
        self.nacked = 0
        self.duplicates = 0
        self.frames = 0               # basic.ack / basic.nack frames received
        self.done = bytearray(n + 1)  # by delivery tag (1-based)
        self.low = 1                  # lowest tag not yet confirmed
        self.error = None
        self.started = self.finished = None
        self.conn = self.ch = None

    def run(self):
        self.conn = pika.SelectConnection(self.params, on_open_callback=self._on_open,
                                          on_open_error_callback=self._on_error,
                                          on_close_callback=self._on_closed)
        self.conn.ioloop.call_later(self.timeout, self._on_timeout)
        self.conn.ioloop.start()
        if self.error:
            raise AssertionError(self.error)

    def _on_error(self, conn, err):
        self.error = f"connection failed: {err!r}"
        conn.ioloop.stop()

    def _on_closed(self, conn, reason):
        if self.finished is None and self.error is None:
            self.error = f"connection closed early: {reason!r}"
        conn.ioloop.stop()

    def _on_timeout(self):
        self.error = (f"not finished within {self.timeout} s: published {self.published}, "
                      f"acked {self.acked}, nacked {self.nacked}")
        self._close()

    def _close(self):
        if self.conn.is_open:
            self.conn.close()
        else:
            self.conn.ioloop.stop()

    def _on_open(self, conn):
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, ch):
        self.ch = ch
        ch.add_on_close_callback(self._on_channel_closed)
        ch.confirm_delivery(ack_nack_callback=self._on_confirm,
                            callback=lambda _: ch.queue_declare(
                                self.queue, durable=True, callback=self._on_declared))

    def _on_channel_closed(self, ch, reason):
        if self.finished is None and self.error is None:
            self.error = f"channel closed: {reason!r}"
            self._close()

    def _on_declared(self, _):
        self.started = time.monotonic()
        self._pump()

    def _pump(self):
        props = persistent()
        while self.published < self.n and self.published - self.confirmed < self.window:
            self.ch.basic_publish("", self.queue, b"%08d" % self.published, props)
            self.published += 1

    @property
    def confirmed(self):
        return self.acked + self.nacked

    def _mark(self, tag, nack):
        if tag < 1 or tag > self.published:
            self.error = f"confirm for tag {tag} never published ({self.published} so far)"
            return
        if self.done[tag]:
            self.duplicates += 1
            return
        self.done[tag] = 1
        if nack:
            self.nacked += 1
        else:
            self.acked += 1

    def _on_confirm(self, frame):
        m = frame.method
        self.frames += 1
        nack = isinstance(m, pika.spec.Basic.Nack)
        if m.multiple:
            for tag in range(self.low, m.delivery_tag + 1):
                if not self.done[tag]:
                    self._mark(tag, nack)
        else:
            self._mark(m.delivery_tag, nack)
        while self.low <= self.n and self.done[self.low]:
            self.low += 1
        if self.error:
            self._close()
        elif self.confirmed == self.n:
            self.finished = time.monotonic()
            self._close()
        else:
            self._pump()


@pytest.mark.amqp_timeout(180)
def test_confirms_for_100k_persistent_messages(amqp_factory, pika_connect):
    """100,000 persistent messages published pipelined on a confirm channel: every
    one acked exactly once, in under 60 s, by coalesced acks (multiple=1, far
    fewer frames than messages, as RabbitMQ sends them); after a kill -9 and a
    restart all 100,000 are consumed, each once."""
    n = 100_000
    broker = amqp_factory().start()
    pub = PipelinedConfirmPublisher(broker.amqp_port, "confirmed", n)
    pub.run()
    elapsed = pub.finished - pub.started
    print(f"100k persistent confirmed in {elapsed:.1f} s ({n / elapsed:.0f} msg/s)")
    assert (pub.acked, pub.nacked, pub.duplicates) == (n, 0, 0)
    assert elapsed < 60, f"confirms took {elapsed:.1f} s"
    print(f"{pub.frames} confirm frames for {n} messages")
    assert pub.frames < n // 10, f"{pub.frames} confirm frames: acks were not coalesced"

    broker.kill9()  # a confirmed persistent message is on disk: a crash keeps it
    broker.start()
    conn = pika_connect(broker)
    ch = conn.channel()
    assert message_count(ch, "confirmed") == n
    ch.basic_qos(prefetch_count=2000)
    seen = bytearray(n)
    count = dups = 0
    last_tag = 0

    def on_message(c, method, props, body):
        nonlocal count, dups, last_tag
        i = int(body)
        if seen[i]:
            dups += 1
        seen[i] = 1
        count += 1
        last_tag = method.delivery_tag
        if count % 500 == 0:
            c.basic_ack(last_tag, multiple=True)

    tag = ch.basic_consume("confirmed", on_message, auto_ack=False)
    deadline = time.monotonic() + 90
    while count < n and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    if count % 500:
        ch.basic_ack(last_tag, multiple=True)
    ch.basic_cancel(tag)
    assert (count, dups) == (n, 0), f"consumed {count} of {n} ({dups} duplicates)"
    assert all(seen)
    assert message_count(ch, "confirmed") == 0


class MixedConfirmPublisher(PipelinedConfirmPublisher):
    """Every other publish goes to a routing key no queue has: the broker confirms
    those at once, while the persistent ones before them wait for the disk, so
    confirms complete out of order."""

    def _pump(self):
        props = persistent()
        while self.published < self.n and self.published - self.confirmed < self.window:
            key = self.queue if self.published % 2 == 0 else self.queue + "-nowhere"
            self.ch.basic_publish("", key, b"%08d" % self.published, props)
            self.published += 1


def test_confirms_out_of_order_each_exactly_once(amqp_factory, pika_connect):
    """Confirms that complete out of order (unroutable publishes are confirmed at
    once, persistent ones after the fsync) still confirm every tag exactly once:
    a coalesced multiple=1 ack must never cover a publish not yet stored, which
    the client would then see confirmed twice (or before it is on disk)."""
    n = 4000
    broker = amqp_factory().start()
    pub = MixedConfirmPublisher(broker.amqp_port, "mixed", n, window=1000)
    pub.run()
    assert (pub.acked, pub.nacked, pub.duplicates) == (n, 0, 0)
    conn = pika_connect(broker)
    assert message_count(conn.channel(), "mixed") == n // 2


class CrashingPublisher(PipelinedConfirmPublisher):
    """Stops its broker with kill -9 once `kill_at` messages are confirmed, while
    more are in flight; the connection dying then is expected."""

    def __init__(self, broker, queue, n, kill_at, **kw):
        super().__init__(broker.amqp_port, queue, n, **kw)
        self.broker = broker
        self.kill_at = kill_at

    def _on_confirm(self, frame):
        super()._on_confirm(frame)
        if self.finished is None and self.error is None and self.acked >= self.kill_at:
            self.broker.kill9()
            self.finished = time.monotonic()  # the close that follows is expected
            self.conn.ioloop.stop()


@pytest.mark.amqp_timeout(120)
def test_confirmed_messages_survive_kill9_during_publish(amqp_factory, pika_connect):
    """kill -9 while a pipelined publisher has thousands of messages unconfirmed:
    after the restart every confirmed message is there exactly once, and nothing
    that was never published appears."""
    n = 50_000
    broker = amqp_factory().start()
    pub = CrashingPublisher(broker, "crash", n, kill_at=20_000)
    pub.run()
    assert not broker.running()
    assert pub.nacked == 0 and pub.duplicates == 0
    confirmed = {tag - 1 for tag in range(1, pub.published + 1) if pub.done[tag]}
    assert len(confirmed) >= 20_000
    assert pub.published > len(confirmed), "nothing was in flight at the crash"

    broker.start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ready = message_count(ch, "crash")
    assert len(confirmed) <= ready <= pub.published
    ch.basic_qos(prefetch_count=2000)
    seen = []

    def on_message(c, method, props, body):
        seen.append(int(body))
        if len(seen) % 500 == 0 or len(seen) == ready:
            c.basic_ack(method.delivery_tag, multiple=True)

    tag = ch.basic_consume("crash", on_message, auto_ack=False)
    deadline = time.monotonic() + 60
    while len(seen) < ready and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    conn.process_data_events(time_limit=0.3)
    ch.basic_cancel(tag)
    print(f"published {pub.published}, confirmed {len(confirmed)}, recovered {ready}")
    assert len(seen) == ready, f"consumed {len(seen)} of {ready}"
    assert len(set(seen)) == len(seen), "a message came back twice"
    lost = confirmed - set(seen)
    assert not lost, f"{len(lost)} confirmed messages lost, e.g. {sorted(lost)[:5]}"
    assert max(seen) < pub.published
    assert seen == sorted(seen), "recovered messages out of publish order"
