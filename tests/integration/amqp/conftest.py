"""Fixtures for the AMQP 0-9-1 integration tests.

Builds on tests/integration/conftest.py (`sluice_factory`: the real broker on
free 127.0.0.1 ports with its own data directory). Adds:

- `amqp_factory(config_lines=(), **kw)`: an unstarted broker with only the
  AMQP listener, optionally with a config file made of config_lines;
- `amqp_broker`: a started one with the default configuration;
- `pika_connect(broker, **params)`: a pika BlockingConnection to it (closed at
  teardown);
- a hard per-test time limit (SIGALRM; default 30 s,
  `@pytest.mark.amqp_timeout(seconds)` to change it);
- on a failed test, the tail of each broker's stderr is printed.

Clients: python3-pika (Debian), run with /usr/bin/python3.
"""

import importlib.util
import pathlib
import signal

import pytest


def _reexport_parent_conftest():
    """Copies the public helpers (not the fixtures) of tests/integration/conftest.py here.

    pytest imports every conftest.py as the module `conftest`; re-exporting the
    parent's helpers keeps `from conftest import free_port` working whichever
    conftest pytest imported last (as tests/integration/kafka/conftest.py does).
    """
    path = pathlib.Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("sluice_integration_conftest_amqp", path)
    parent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parent)
    for name, value in vars(parent).items():
        if name.startswith("_") or name in globals():
            continue
        if (hasattr(value, "_pytestfixturefunction")
                or type(value).__name__ == "FixtureFunctionDefinition"):
            continue
        globals()[name] = value


_reexport_parent_conftest()

DEFAULT_TEST_TIMEOUT = 30.0
STDERR_TAIL_CHARS = 6000


def pytest_configure(config):
    config.addinivalue_line("markers", "amqp_timeout(seconds): hard time limit of an AMQP test")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "amqp_rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def amqp_test_deadline(request):
    """Fails the test (raising from SIGALRM) once it runs longer than its limit."""
    marker = request.node.get_closest_marker("amqp_timeout")
    limit = marker.args[0] if marker else DEFAULT_TEST_TIMEOUT

    def expired(signum, frame):
        raise pytest.fail.Exception(f"test exceeded its time limit of {limit:.0f} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def amqp_factory(sluice_factory, tmp_path, request):
    """Makes unstarted AMQP-only brokers; config_lines become a --config file."""
    made = []

    def make(config_lines=(), **kwargs):
        kwargs.setdefault("kafka", False)
        kwargs.setdefault("amqp", True)
        kwargs.setdefault("http", False)
        if config_lines:
            path = tmp_path / f"sluice-{len(made)}.conf"
            path.write_text("".join(line + "\n" for line in config_lines))
            kwargs["config"] = path
        s = sluice_factory(**kwargs)
        made.append(s)
        return s

    yield make
    rep = getattr(request.node, "amqp_rep_call", None)
    if rep is not None and rep.failed:
        for i, s in enumerate(made):
            if s.stderr_path.exists():
                text = s.stderr
                print(f"\n--- sluice #{i} (amqp port {s.amqp_port}) stderr, last "
                      f"{STDERR_TAIL_CHARS} chars ---\n{text[-STDERR_TAIL_CHARS:]}")


def check_serves_amqp(broker):
    """Fails clearly when the binary's AMQP port is not served by the AMQP front end
    (src/main.c must pass amqp_server_proto() to the AMQP listener)."""
    import socket
    with socket.create_connection(("127.0.0.1", broker.amqp_port), timeout=3) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        try:
            first = s.recv(7)
        except socket.timeout:
            first = b""
    if first[:1] != b"\x01":
        pytest.fail(f"{broker.args()[0]} does not serve AMQP 0-9-1 on its AMQP port "
                    "(no connection.start): is the AMQP front end wired into src/main.c?")


@pytest.fixture
def amqp_broker(amqp_factory):
    """A started AMQP-only broker with the default configuration."""
    broker = amqp_factory().start()
    check_serves_amqp(broker)
    return broker


@pytest.fixture
def pika_connect():
    """Opens pika BlockingConnections to a broker; closes the ones left open."""
    import pika

    opened = []

    def connect(broker, **params):
        params.setdefault("blocked_connection_timeout", 10)
        params.setdefault("socket_timeout", 5)
        params.setdefault("connection_attempts", 1)
        c = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", broker.amqp_port, **params))
        opened.append(c)
        return c

    yield connect
    for c in opened:
        if c.is_open:
            try:
                c.close()
            except Exception:  # the broker may have closed it meanwhile
                pass
