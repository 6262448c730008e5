"""Real, unmodified AMQP clients other than pika against the broker:

- amqp-tools (Debian; librabbitmq): amqp-declare-queue, amqp-publish (single
  bodies, line-buffered stdin, persistent, content type, headers), amqp-get and
  amqp-consume -c N, amqp-delete-queue;
- amqplib (npm, pinned in node/package-lock.json; scripts in node/): a work
  queue with confirms, prefetch 1, acks and a requeued reject across 3 workers,
  a fanout pub/sub with 2 subscribers, and transactions (tx.*).

Install the clients with scripts/setup-amqp-clients.sh; a missing client fails
the test (nothing is skipped). Every subprocess runs under a timeout."""

import json
import pathlib
import shutil
import subprocess
import time

import pika
import pika.exceptions
import pytest

NODE_DIR = pathlib.Path(__file__).resolve().parent / "node"
SETUP_HINT = "run scripts/setup-amqp-clients.sh"


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing from PATH (Debian package amqp-tools): {SETUP_HINT}")
    return path


def server_args(broker):
    return ["-s", "127.0.0.1", "--port", str(broker.amqp_port), "--heartbeat", "0"]


def run_tool(broker, name, *args, stdin=None, timeout=15):
    """Runs amqp-<name> against broker; returns CompletedProcess (bytes)."""
    cmd = [tool("amqp-" + name)] + server_args(broker) + list(args)
    try:
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s; "
                    f"stdout:\n{e.stdout!r}\nstderr:\n{e.stderr!r}")


def ok(r):
    assert r.returncode == 0, f"{r.args} exited {r.returncode}: {r.stderr!r}"
    return r.stdout


def test_amqp_tools_declare_publish_get_consume(amqp_broker, pika_connect):
    assert ok(run_tool(amqp_broker, "declare-queue", "-q", "tools", "-d")).strip() == b"tools"

    ok(run_tool(amqp_broker, "publish", "-r", "tools", "-b", "first body"))
    ok(run_tool(amqp_broker, "publish", "-r", "tools", "-p", "-C", "text/plain",
                "-H", "origin: amqp-tools", "-b", "persistent body"))
    ok(run_tool(amqp_broker, "publish", "-r", "tools", "-l",
                stdin=b"line one\nline two\nline three\n"))
    ok(run_tool(amqp_broker, "publish", "-r", "tools", "-b", "x" * 100_000))

    ch = pika_connect(amqp_broker).channel()
    assert ch.queue_declare("tools", durable=True, passive=True).method.message_count == 6

    # amqp-get takes one message (with an ack) and prints its body.
    assert ok(run_tool(amqp_broker, "get", "-q", "tools")) == b"first body"
    # The properties amqp-publish set arrived (read with pika, without acking).
    m, props, body = ch.basic_get("tools", auto_ack=False)
    assert body == b"persistent body"
    assert props.delivery_mode == 2 and props.content_type == "text/plain"
    assert props.headers.get("origin") in ("amqp-tools", b"amqp-tools")
    ch.basic_reject(m.delivery_tag, requeue=True)
    assert ok(run_tool(amqp_broker, "get", "-q", "tools")) == b"persistent body"

    # amqp-consume -c 3 runs `cat` once per message and stops after 3 (acking each).
    # (amqp-publish -l keeps each line's newline in the body.)
    out = ok(run_tool(amqp_broker, "consume", "-q", "tools", "-c", "3", "-p", "1", "cat"))
    assert out == b"line one\nline two\nline three\n"
    assert ok(run_tool(amqp_broker, "get", "-q", "tools")) == b"x" * 100_000

    empty = run_tool(amqp_broker, "get", "-q", "tools")
    assert empty.returncode != 0 and empty.stdout == b""
    assert ch.queue_declare("tools", durable=True, passive=True).method.message_count == 0

    ok(run_tool(amqp_broker, "delete-queue", "-q", "tools"))
    assert run_tool(amqp_broker, "get", "-q", "tools").returncode != 0  # 404 now


def test_amqp_tools_consume_from_exchange(amqp_broker, pika_connect):
    """amqp-consume -e binds its own queue to the exchange; what amqp-publish sends
    to the exchange with a matching routing key reaches it, the rest does not."""
    consumer = subprocess.Popen(
        [tool("amqp-consume")] + server_args(amqp_broker)
        + ["-e", "amq.topic", "-r", "orders.*", "-c", "3", "cat"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Until amqp-consume's binding exists a mandatory probe comes back unroutable.
        ch = pika_connect(amqp_broker).channel()
        ch.confirm_delivery()
        deadline = time.monotonic() + 10
        while True:
            try:
                ch.basic_publish("amq.topic", "orders.probe", b"probe", mandatory=True)
                break
            except pika.exceptions.UnroutableError:
                assert consumer.poll() is None, consumer.communicate()[1]
                assert time.monotonic() < deadline, "amqp-consume never bound its queue"
                time.sleep(0.05)
        ok(run_tool(amqp_broker, "publish", "-e", "amq.topic", "-r", "orders.new",
                    "-b", "order 1"))
        ok(run_tool(amqp_broker, "publish", "-e", "amq.topic", "-r", "stock.low",
                    "-b", "not for it"))
        ok(run_tool(amqp_broker, "publish", "-e", "amq.topic", "-r", "orders.paid",
                    "-b", "order 2"))
        out, err = consumer.communicate(timeout=10)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(timeout=5)
    assert consumer.returncode == 0, err
    assert out == b"probeorder 1order 2"


def need_amqplib():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing from PATH (Debian package nodejs): " + SETUP_HINT)
    if not (NODE_DIR / "node_modules" / "amqplib" / "package.json").exists():
        pytest.fail(f"amqplib is not installed in {NODE_DIR}/node_modules: " + SETUP_HINT)
    return node


def run_node(script, args, timeout=25):
    """Runs node/<script> with args (its own limit a bit under timeout); returns
    the JSON it printed. Fails on a timeout or a non-zero exit."""
    node = need_amqplib()
    cmd = [node, str(NODE_DIR / script)] + [str(a) for a in args] + [int(timeout * 900)]
    cmd = [str(c) for c in cmd]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           cwd=NODE_DIR, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"node {script} did not finish within {timeout} s; "
                    f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}")
    assert r.returncode == 0, f"node {script} exited {r.returncode}:\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_amqplib_work_queue(amqp_broker):
    n, workers = 300, 3
    res = run_node("work_queue.js", [amqp_broker.amqp_port, "tasks", n, workers])
    received = res["received"]
    assert sorted(received) == sorted(f"task-{i}" for i in range(n))
    dups = {t: d for t, d in received.items() if len(d) != 1}
    assert not dups, f"tasks acked more than once: {dict(list(dups.items())[:5])}"
    redelivered = [t for t, d in received.items() if d[0][1]]
    assert redelivered == ["task-0"], redelivered  # the one rejected with requeue
    assert res["maxInFlight"] == 1, "prefetch 1 let a worker hold two unacked tasks"
    assert all(c > n // (workers * 4) for c in res["perWorker"]), res["perWorker"]
    assert sum(res["perWorker"]) == n
    assert res["remaining"] == 0 and res["consumers"] == workers


def test_amqplib_fanout_pub_sub(amqp_broker):
    n, subs = 500, 2
    res = run_node("fanout.js", [amqp_broker.amqp_port, "events", n, subs])
    assert len(set(res["queues"])) == subs
    assert all(q.startswith("amq.gen-") for q in res["queues"]), res["queues"]
    want = [f"event-{i}" for i in range(n)]
    for got in res["bodies"]:
        assert got == want, f"got {len(got)} events, first differences " \
            f"{[(i, a, b) for i, (a, b) in enumerate(zip(got, want)) if a != b][:3]}"
    assert res["afterClose"] == ["gone"] * subs


def test_amqplib_transactions(amqp_broker):
    """amqplib (its Channel#rpc with tx.select / commit / rollback): publishes
    unseen before commit and counted after; a rollback drops publishes; an ack in
    a rolled-back transaction leaves the message to come back, redelivered, when
    the channel closes; acks committed empty the queue; tx.select on a confirm
    channel is 406."""
    n = 20
    res = run_node("tx.js", [amqp_broker.amqp_port, "tx-node", n])
    assert res["beforeCommit"] == 0 and res["getBeforeCommit"] is False
    assert res["afterCommit"] == n and res["afterRollback"] == n
    assert res["redeliveredAfterRollback"] is True
    assert res["bodies"] == [f"m-{i}" for i in range(n)]
    assert res["afterAckCommit"] == 0
    assert "406" in res["confirmToTx"] and "cannot switch from confirm to tx mode" in \
        res["confirmToTx"], res["confirmToTx"]
