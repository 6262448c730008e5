"""Fixtures for the Kafka integration tests.

Builds on tests/integration/conftest.py (`sluice_factory`: the real broker on
free 127.0.0.1 ports with its own data directory). Adds:

- `kafka_factory(config_lines=(), **kw)`: an unstarted broker with only the
  Kafka listener, optionally with a config file made of config_lines;
- `broker`: a started one with the default configuration;
- a hard per-test time limit (SIGALRM; default 30 s times kafka_helpers.time_scale(),
  `@pytest.mark.kafka_timeout(seconds)` to change it);
- on a failed test, the tail of each broker's stderr is printed, next to the
  clients' own logs that pytest captured.
"""

import importlib.util
import pathlib
import signal

import pytest

from kafka_helpers import bound


def _reexport_parent_conftest():
    """Copies the public helpers (not the fixtures) of tests/integration/conftest.py here.

    pytest imports every conftest.py as the module `conftest`; once this one
    is imported, `from conftest import free_port` in a test of the parent
    directory (test_startstop.py) would find this module. Re-exporting the
    parent's helpers keeps such imports working whichever order pytest uses.
    """
    path = pathlib.Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("sluice_integration_conftest", path)
    parent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parent)
    for name, value in vars(parent).items():
        if name.startswith("_") or name in globals():
            continue
        if (hasattr(value, "_pytestfixturefunction")  # pytest 7
                or type(value).__name__ == "FixtureFunctionDefinition"):  # pytest 8
            continue  # fixtures stay registered by pytest from the parent
        globals()[name] = value


_reexport_parent_conftest()

DEFAULT_TEST_TIMEOUT = 30.0
STDERR_TAIL_CHARS = 6000


def pytest_configure(config):
    config.addinivalue_line("markers", "kafka_timeout(seconds): hard time limit of a Kafka test")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "kafka_rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def kafka_test_deadline(request):
    """Fails the test (raising from SIGALRM) once it runs longer than its limit."""
    marker = request.node.get_closest_marker("kafka_timeout")
    limit = bound(marker.args[0] if marker else DEFAULT_TEST_TIMEOUT)

    def expired(signum, frame):
        raise pytest.fail.Exception(f"test exceeded its time limit of {limit:.0f} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def kafka_factory(sluice_factory, tmp_path, request):
    """Makes unstarted Kafka-only brokers; config_lines become a --config file."""
    made = []

    def make(config_lines=(), **kwargs):
        kwargs.setdefault("kafka", True)
        kwargs.setdefault("amqp", False)
        kwargs.setdefault("http", False)
        if config_lines:
            path = tmp_path / f"sluice-{len(made)}.conf"
            path.write_text("".join(line + "\n" for line in config_lines))
            kwargs["config"] = path
        s = sluice_factory(**kwargs)
        made.append(s)
        return s

    yield make
    rep = getattr(request.node, "kafka_rep_call", None)
    if rep is not None and rep.failed:
        for i, s in enumerate(made):
            if s.stderr_path.exists():
                text = s.stderr
                print(f"\n--- sluice #{i} (kafka port {s.kafka_port}) stderr, last "
                      f"{STDERR_TAIL_CHARS} chars ---\n{text[-STDERR_TAIL_CHARS:]}")


@pytest.fixture
def broker(kafka_factory):
    """A started Kafka-only broker with the default configuration."""
    return kafka_factory().start()
