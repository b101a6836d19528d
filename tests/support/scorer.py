"""An HTTP reward scorer for the RL stages' tests: it rewards the share of digits in the assistant's answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def digit_share(answer: str) -> float:
    """The rule-based reward: the share of digits in ``answer``."""
    return sum(c.isdigit() for c in answer) / max(len(answer), 1)


@dataclass
class Scorer:
    """A running scorer: its URL and every request body it was sent, in order."""

    url: str
    seen: list[dict] = field(default_factory=list)


@contextmanager
def digit_scorer() -> Iterator[Scorer]:
    """Serve ``POST /score`` ({"messages": [...]} → {"reward": digit share of the last message}) until exit."""
    scorer = Scorer("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            scorer.seen.append(body)
            payload = json.dumps({"reward": digit_share(body["messages"][-1]["content"])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scorer.url = f"http://127.0.0.1:{server.server_address[1]}/score"
    try:
        yield scorer
    finally:
        server.shutdown()
        server.server_close()
