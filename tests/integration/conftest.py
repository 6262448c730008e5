"""Fixtures that run the real `sluice` binary for integration tests.

Run with: /usr/bin/python3 -m pytest tests/integration
The binary is $SLUICE_BIN, default <repo>/build/sluice.

A `Sluice` is one broker process bound to 127.0.0.1 on free ports it picks
itself, with its own temporary data directory and its stderr in a file. Every
wait is bounded; processes are signalled only by the PID this fixture started.
At teardown a test fails if any broker's stderr holds a sanitizer report.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "runtime error:",
    "ERROR: LeakSanitizer",
    "WARNING: ThreadSanitizer",
)
SERVICES = ("kafka", "amqp", "http")


def sluice_bin():
    """Path of the binary under test."""
    return os.environ.get("SLUICE_BIN", str(REPO / "build" / "sluice"))


def sluice_version():
    """The project version from CMakeLists.txt (what --version must print)."""
    text = (REPO / "CMakeLists.txt").read_text()
    return re.search(r"project\(sluice VERSION ([0-9.]+)", text).group(1)


def free_port(host="127.0.0.1"):
    """A port nothing listens on right now (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def can_connect(port, host="127.0.0.1", timeout=1.0):
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listening_ports(pid):
    """TCP ports the process `pid` listens on (from /proc, IPv4 and IPv6)."""
    inodes = set()
    fd_dir = pathlib.Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def sanitizer_report(text):
    """The first sanitizer marker found in text, or None."""
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    return None


class Sluice:
    """One sluice broker process for a test.

    kafka/amqp/http: True picks a free port, False passes 0 (disabled), an int
    uses that port. data_dir defaults to a fresh temporary directory. extra_args
    are appended to the command line (flags override the config file).
    """

    def __init__(self, base_dir, kafka=True, amqp=True, http=True, data_dir=None,
                 config=None, threads=2, log_level="info", extra_args=()):
        self.base_dir = pathlib.Path(base_dir)
        self.ports = {}
        for name, want in zip(SERVICES, (kafka, amqp, http)):
            if want is True:
                self.ports[name] = free_port()
            elif want is False or want == 0:
                self.ports[name] = 0
            else:
                self.ports[name] = int(want)
        self.data_dir = pathlib.Path(data_dir) if data_dir else pathlib.Path(
            tempfile.mkdtemp(prefix="data-", dir=self.base_dir))
        self.config = config
        self.threads = threads
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.stderr_path = pathlib.Path(
            tempfile.mkstemp(prefix="stderr-", suffix=".log", dir=self.base_dir)[1])
        self.proc = None
        self.returncode = None

    @property
    def kafka_port(self):
        return self.ports["kafka"]

    @property
    def amqp_port(self):
        return self.ports["amqp"]

    @property
    def http_port(self):
        return self.ports["http"]

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def stderr(self):
        """Everything the broker wrote to stderr, over all its starts."""
        return self.stderr_path.read_text(errors="replace")

    def args(self):
        a = [sluice_bin()]
        if self.config:
            a += ["--config", str(self.config)]
        a += ["--data-dir", str(self.data_dir),
              "--port-kafka", str(self.ports["kafka"]),
              "--port-amqp", str(self.ports["amqp"]),
              "--port-http", str(self.ports["http"]),
              "--threads", str(self.threads),
              "--log-level", self.log_level]
        return a + self.extra_args

    def start(self, wait=True, timeout=READY_TIMEOUT):
        """Starts the process; with wait, returns once every enabled port accepts."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.returncode = None
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Waits (bounded) until every enabled port accepts a TCP connection."""
        deadline = time.monotonic() + timeout
        pending = [p for p in self.ports.values() if p]
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"sluice exited with {self.proc.returncode} before it was ready:\n"
                    f"{self.stderr}")
            pending = [p for p in pending if not can_connect(p, timeout=0.5)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"sluice not listening on {pending} after {timeout} s:\n"
                                   f"{self.stderr}")
            time.sleep(0.05)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Waits (bounded) for the process to exit; returns its code or None."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig and returns the exit code; after timeout, SIGKILLs and raises."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, sig)
        code = self.wait_exit(timeout)
        if code is None:
            self.kill9()
            raise RuntimeError(f"sluice did not exit within {timeout} s of signal {sig}:\n"
                               f"{self.stderr}")
        return code

    def kill9(self):
        """SIGKILLs the process (a crash) and reaps it."""
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.returncode = self.proc.wait(timeout=STOP_TIMEOUT)
        return self.returncode

    def restart(self, sig=signal.SIGTERM):
        """Stops (if running) and starts again with the same ports and data dir."""
        if self.running():
            self.stop(sig)
        return self.start()

    def listening_ports(self):
        """Ports the running process listens on, read from /proc."""
        return listening_ports(self.proc.pid)


def run_sluice(args, timeout=20.0):
    """Runs the binary once with args (for --help, bad flags); returns CompletedProcess."""
    return subprocess.run([sluice_bin()] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def sluice_factory(tmp_path):
    """Makes Sluice instances (unstarted); stops them and checks sanitizers at teardown."""
    made = []

    def make(**kwargs):
        s = Sluice(tmp_path, **kwargs)
        made.append(s)
        return s

    yield make
    problems = []
    for s in made:
        if s.running():
            try:
                s.stop()
            except RuntimeError as e:
                problems.append(str(e))
        if s.stderr_path.exists():
            marker = sanitizer_report(s.stderr)
            if marker:
                problems.append(f"sanitizer report ({marker}) in sluice stderr:\n{s.stderr}")
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.fixture
def sluice(sluice_factory):
    """A started broker with all three listeners on free ports."""
    return sluice_factory().start()


@pytest.fixture
def run():
    """Runs the binary once; fails the test on a sanitizer report in its output."""
    def _run(args, timeout=20.0):
        result = run_sluice(args, timeout)
        marker = sanitizer_report(result.stderr)
        if marker:
            pytest.fail(f"sanitizer report ({marker}):\n{result.stderr}")
        return result
    return _run
