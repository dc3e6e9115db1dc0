"""Starts `impchat serve` on loopback with a tiny fixture model for the tests to drive."""

import base64
import os
import re
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from openai import OpenAI

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("IMPCHAT_BIN", ROOT / "target" / "debug" / "impchat"))
MODEL_DIR = ROOT / "tests" / "fixtures" / "models" / "imp-v1.5-3b-phi2"
IMAGES = ROOT / "tests" / "fixtures" / "images"
API_KEY = "test-key-123"
READY = re.compile(r"serving on http://(127\.0\.0\.1:\d+)/v1")


class Server:
    """A running `impchat serve` whose stderr (the request log) is collected line by line."""

    def __init__(self, *extra_args: str, api_key: str | None = API_KEY, env: dict | None = None):
        args = [str(BINARY), "serve", "--model", str(MODEL_DIR), "--port", "0"]
        if api_key:
            args += ["--api-key", api_key]
        args += list(extra_args)
        self.api_key = api_key
        environment = {k: v for k, v in os.environ.items() if k != "IMPCHAT_API_KEY"}
        environment.update(env or {})
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.address = ""
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._ready.wait(timeout=120):
            self.stop()
            raise RuntimeError(f"impchat serve did not start: {self.log()}")
        if not self.address:
            raise RuntimeError(f"impchat serve exited: {self.log()}")

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
            match = READY.search(line)
            if match:
                self.address = match.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def base_url(self) -> str:
        return f"http://{self.address}/v1"

    def client(self, **kwargs) -> OpenAI:
        kwargs.setdefault("api_key", self.api_key or "unused")
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 120)
        return OpenAI(base_url=self.base_url, **kwargs)

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 60) -> re.Match:
        """Waits until a log line matches `pattern` (a regex) and returns the match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
            time.sleep(0.05)
        raise AssertionError(f"no log line matched {pattern!r}; log:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_server(*extra_args: str, api_key: str | None = API_KEY, env: dict | None = None):
    server = Server(*extra_args, api_key=api_key, env=env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server():
    if not BINARY.exists():
        pytest.exit(f"{BINARY} is missing; build it first: cargo build -p impchat-cli", 2)
    with running_server() as running:
        yield running


@pytest.fixture(scope="session")
def client(server) -> OpenAI:
    return server.client()


@pytest.fixture(scope="session")
def model_id(client) -> str:
    return client.models.list().data[0].id


def data_url(path: Path, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="session")
def shapes_url() -> str:
    return data_url(IMAGES / "shapes.png")
