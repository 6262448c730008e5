"""A Kafka-aware TCP proxy for tests that need lost responses.

The proxy listens on 127.0.0.1 (a free port) and forwards every connection
to one broker. It reads frames in both directions (4-byte length prefix,
request header v1/v2 begins api_key, api_version, correlation_id), so that:

- Metadata responses (v0-v8, non-flexible, all librdkafka 2.0.2 sends) name
  the proxy's port instead of the broker's, and the client keeps talking
  through the proxy after bootstrap;
- the response to every `drop_every`-th Produce request (up to `max_drops`)
  is thrown away and the connection cut in both directions: the broker has
  appended the batch, the client never hears so, and retries it.

Only for a single-broker test on loopback. Threads are daemons; stop() closes
every socket.
"""

import socket
import struct
import threading

API_PRODUCE = 0
API_METADATA = 3


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock):
    """One length-prefixed frame (without its prefix), or None at EOF."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > 256 * 1024 * 1024:
        return None
    return _recv_exact(sock, size)


def _patch_metadata_ports(body, version, port):
    """Metadata response body (after the correlation id) with every broker's port set."""
    if version >= 9:
        return body  # flexible: not used by the clients these tests drive through a proxy
    out = bytearray(body)
    pos = 4 if version >= 3 else 0  # throttle_time_ms
    (count,) = struct.unpack_from(">i", out, pos)
    pos += 4
    for _ in range(max(count, 0)):
        pos += 4  # node_id
        (hlen,) = struct.unpack_from(">h", out, pos)
        pos += 2 + max(hlen, 0)
        struct.pack_into(">i", out, pos, port)
        pos += 4
        if version >= 1:  # rack: nullable string
            (rlen,) = struct.unpack_from(">h", out, pos)
            pos += 2 + max(rlen, 0)
    return bytes(out)


class KafkaProxy:
    """See the module comment. `drops` counts Produce responses thrown away."""

    def __init__(self, broker_port, drop_every=0, max_drops=0):
        self.broker_port = broker_port
        self.drop_every = drop_every
        self.max_drops = max_drops
        self.drops = 0
        self.produce_responses = 0
        self.lock = threading.Lock()
        self.sockets = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopped = True
        with self.lock:
            socks = list(self.sockets) + [self.listener]
        for s in socks:
            _close(s)

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.broker_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self.lock:
                self.sockets += [client, upstream]
            inflight = {}  # correlation id -> (api_key, api_version)
            threading.Thread(target=self._requests, args=(client, upstream, inflight),
                             daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, inflight),
                             daemon=True).start()

    def _requests(self, client, upstream, inflight):
        try:
            while True:
                frame = _read_frame(client)
                if frame is None or len(frame) < 8:
                    break
                key, version, corr = struct.unpack_from(">hhi", frame, 0)
                inflight[corr] = (key, version)
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        _close(client)
        _close(upstream)

    def _responses(self, upstream, client, inflight):
        try:
            while True:
                frame = _read_frame(upstream)
                if frame is None or len(frame) < 4:
                    break
                (corr,) = struct.unpack_from(">i", frame, 0)
                key, version = inflight.pop(corr, (None, None))
                if key == API_METADATA:
                    frame = frame[:4] + _patch_metadata_ports(frame[4:], version, self.port)
                elif key == API_PRODUCE and self._should_drop():
                    break
                client.sendall(struct.pack(">i", len(frame)) + frame)
        except (OSError, struct.error):
            pass
        _close(client)
        _close(upstream)

    def _should_drop(self):
        with self.lock:
            self.produce_responses += 1
            if (self.drop_every and self.drops < self.max_drops
                    and self.produce_responses % self.drop_every == 0):
                self.drops += 1
                return True
            return False


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
