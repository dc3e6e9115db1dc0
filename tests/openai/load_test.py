#!/usr/bin/env python3
"""Load test for `impchat serve` (not part of the test suite).

Starts its own server on 127.0.0.1 with the tiny fixture model, sends a fixed number of
mixed requests (plain, streamed, with an image, and malformed) from 50 concurrent clients over
loopback, and stops by itself. Checks that every request got an answer or a 429 (bad requests:
their 4xx), that nothing crashed, and that the server's RSS stays flat across rounds.

    tests/openai/.venv/bin/python tests/openai/load_test.py [--requests 600] [--clients 50]
"""

import argparse
import base64
import http.client
import json
import random
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import API_KEY, IMAGES, Server  # noqa: E402

REQUEST_TIMEOUT_S = 120
DEADLINE_S = 900


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Load:
    def __init__(self, server: Server, model_id: str, seed: int, retries: int):
        self.server = server
        self.retries = retries
        self.model_id = model_id
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        image = base64.b64encode((IMAGES / "shapes.png").read_bytes()).decode()
        self.image_url = f"data:image/png;base64,{image}"

    def body(self, kind: str) -> tuple[bytes, set[int]]:
        """The request body for a kind of request and the statuses it may get."""
        user = {"role": "user", "content": "Describe this."}
        request = {"model": self.model_id, "max_tokens": 32, "messages": [user]}
        busy = {429}
        if kind == "stream":
            request.update(stream=True, stream_options={"include_usage": True})
            return json.dumps(request).encode(), {200} | busy
        if kind == "image":
            user["content"] = [{"type": "text", "text": "What is this?"},
                               {"type": "image_url", "image_url": {"url": self.image_url}}]
            return json.dumps(request).encode(), {200} | busy
        if kind == "malformed":
            return b'{"model": "' + self.model_id.encode() + b'", "messages": [', {400}
        if kind == "unknown_model":
            request["model"] = "gpt-4o"
            return json.dumps(request).encode(), {404}
        if kind == "remote_image":
            user["content"] = [{"type": "image_url",
                                "image_url": {"url": "https://example.com/a.png"}}]
            return json.dumps(request).encode(), {400}
        return json.dumps(request).encode(), {200} | busy

    def pick_kind(self) -> str:
        with self.lock:
            roll = self.random.random()
        if roll < 0.35:
            return "plain"
        if roll < 0.60:
            return "stream"
        if roll < 0.80:
            return "image"
        return ("malformed", "unknown_model", "remote_image")[int(roll * 1000) % 3]

    def one(self, _index: int) -> tuple[str, int | str, float, bool, int]:
        """One request, retried after `Retry-After` on 429 as OpenAI clients do."""
        kind = self.pick_kind()
        body, allowed = self.body(kind)
        started = time.monotonic()
        retries = 0
        while True:
            try:
                connection = http.client.HTTPConnection(
                    self.server.address, timeout=REQUEST_TIMEOUT_S)
                connection.request("POST", "/v1/chat/completions", body=body, headers={
                    "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read().decode()
                retry_after = response.getheader("retry-after")
                connection.close()
            except Exception as err:  # a dropped connection or timeout is what we look for
                failure = f"error: {type(err).__name__}: {err}"
                return kind, failure, time.monotonic() - started, False, retries
            if response.status == 429 and retries < self.retries:
                retries += 1
                with self.lock:
                    jitter = self.random.random()
                time.sleep(float(retry_after or 1) * (0.5 + jitter))
                continue
            elapsed = time.monotonic() - started
            ok = response.status in allowed and well_formed(kind, response.status, payload)
            return kind, response.status, elapsed, ok, retries


def well_formed(kind: str, status: int, payload: str) -> bool:
    if status != 200:
        return "error" in json.loads(payload)
    if kind == "stream":
        events = [line for line in payload.split("\n") if line]
        return events[-1] == "data: [DONE]" and '"usage":{' in events[-2]
    return json.loads(payload)["object"] == "chat.completion"


def run_round(load: Load, requests: int, clients: int) -> list[tuple]:
    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(load.one, range(requests)))


def report(name: str, results: list[tuple], seconds: float) -> bool:
    statuses = Counter(str(status) for _, status, _, _, _ in results)
    bad = [r for r in results if not r[3]]
    answered = [elapsed for _, status, elapsed, _, _ in results if status == 200]
    retried = sum(r[4] for r in results)
    print(f"{name}: {len(results)} requests in {seconds:.1f} s; final statuses "
          f"{dict(sorted(statuses.items()))}; {retried} retries after 429")
    if answered:
        answered.sort()
        p95 = answered[int(len(answered) * 0.95) - 1]
        print(f"  200s: {len(answered)}, latency incl. queueing and retries: median "
              f"{statistics.median(answered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; "
              f"{len(answered) / seconds:.1f} answers/s")
    for kind, status, _, _, _ in bad[:10]:
        print(f"  UNEXPECTED: {kind} -> {status}")
    return not bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per round")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--retries", type=int, default=3, help="retries of a 429 per request")
    args = parser.parse_args()

    server = Server("--max-queue", "8")
    deadline = threading.Timer(DEADLINE_S, server.stop)
    deadline.start()
    try:
        pid = server.process.pid
        load = Load(server, model_id="", seed=7, retries=args.retries)
        connection = http.client.HTTPConnection(server.address, timeout=30)
        connection.request("GET", "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        load.model_id = json.loads(connection.getresponse().read())["data"][0]["id"]
        connection.close()
        print(f"server pid {pid}, model {load.model_id}, RSS at start {rss_kib(pid)} KiB")
        run_round(load, 20, 4)  # warm-up: first allocations, first image
        rss = [rss_kib(pid)]
        print(f"RSS after warm-up: {rss[0]} KiB")
        all_ok = True
        for round_number in range(1, args.rounds + 1):
            started = time.monotonic()
            results = run_round(load, args.requests, args.clients)
            all_ok &= report(f"round {round_number}", results, time.monotonic() - started)
            time.sleep(0.5)
            rss.append(rss_kib(pid))
            print(f"  RSS after round {round_number}: {rss[-1]} KiB")
        alive = server.process.poll() is None
        growth = (rss[-1] - rss[1]) / rss[1] if len(rss) > 2 else 0.0
        print(f"server alive: {alive}; RSS warm-up {rss[0]} KiB -> after round 1 {rss[1]} KiB "
              f"-> after last round {rss[-1]} KiB ({growth * 100:+.1f}% over rounds 2..)")
        flat = growth < 0.10
        if not (all_ok and alive and flat):
            print("LOAD TEST FAILED", file=sys.stderr)
            return 1
        print("load test passed")
        return 0
    finally:
        deadline.cancel()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
