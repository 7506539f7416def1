"""A real local OpenAI-compatible chat server, scripted per request (backend and judge tests)."""

import json
import threading
import time
from collections import deque
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply(text="a reply", finish="stop"):
    """A normal 200 answer."""
    return {"json": {"id": "c1", "object": "chat.completion",
                     "choices": [{"index": 0, "finish_reason": finish,
                                  "message": {"role": "assistant", "content": text}}],
                     "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}}


def status(code, body='{"error": {"message": "nope"}}', **headers):
    return {"status": code, "raw": body, "headers": headers}


class ChatServer:
    """POST /v1/chat/completions on loopback.

    Each request takes the next step of ``script``; with the script empty, ``respond(prompt)``
    gives it (by default an echo of the prompt's text after ``default_delay`` seconds). A step is
    a reply text, or a dict with a ``json`` or ``raw`` body, an optional ``status`` and
    ``headers``, or ``delay`` (stall that long, then answer "too late": a timeout test).
    """

    def __init__(self):
        self.script = deque()
        self.default_delay = 0.0
        self.respond = self._echo
        self.seen = []  # (headers, body) per request, in arrival order
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _echo(self, text):
        time.sleep(self.default_delay)
        return "echo: " + text

    def _step(self, path, headers, body):
        with self.lock:
            self.seen.append((headers, body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            step = self.script.popleft() if self.script else None
        if path != "/v1/chat/completions":
            return status(404)
        if step is None:
            step = self.respond(body["messages"][-1]["content"][-1]["text"])
        if isinstance(step, str):
            return reply(step)
        if "delay" in step:
            time.sleep(step["delay"])
            return reply("too late")
        return step

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    step = fake._step(self.path, dict(self.headers), body)
                finally:  # done before the reply leaves: the client may send its next request
                    with fake.lock:  # as soon as it reads this one
                        fake.in_flight -= 1
                try:
                    raw = (step["raw"] if "raw" in step else json.dumps(step["json"])).encode()
                    self.send_response(step.get("status", 200))
                    for name, value in step.get("headers", {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        return Handler

    @property
    def attempts(self):
        return len(self.seen)

    def prompt(self, n):
        """The text of request ``n``, checking that it is one text-only user message."""
        [message] = self.seen[n][1]["messages"]
        assert message["role"] == "user"
        [part] = message["content"]
        assert part["type"] == "text"
        return part["text"]

    @classmethod
    @contextmanager
    def running(cls):
        """A started server, shut down and closed on exit."""
        fake = cls()
        thread = threading.Thread(target=fake.httpd.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield fake
        finally:
            fake.httpd.shutdown()
            fake.httpd.server_close()
            thread.join(5)


@contextmanager
def clients(cls, **defaults):
    """A factory of ``cls`` clients (``defaults`` overridden per call), all closed on exit."""
    made = []

    def make(**settings):
        made.append(cls(**{**defaults, **settings}))
        return made[-1]

    try:
        yield make
    finally:
        for client in made:
            client.close()
