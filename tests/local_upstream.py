"""A tiny OpenAI-compatible HTTP server on loopback for upstream tests (stdlib only).

It answers chat/completions, completions and embeddings; ``script`` holds what to answer
before succeeding, so retries and error mapping meet a real socket: an HTTP status (e.g.
``[429, 503]``, sent with ``Retry-After: {retry_after}``), ``"cut"`` (a 200 stream closed
before any event), ``"cut-mid"`` (one event, then closed without ``[DONE]``), ``"html"``
(a 200 whose body is an HTML page) or ``"hang"`` (reads the request, never answers).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalUpstream:
    def __init__(self, reply: str = "Hello from upstream", key: str | None = None):
        self.reply = reply
        self.key = key
        self.script: list[int | str] = []
        self.retry_after = "0"
        self.requests: list[dict] = []
        self._closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _misbehave(self, step: str):
                self.close_connection = True
                if step == "hang":
                    outer._closing.wait(30)
                    return
                self.send_response(200)
                if step == "html":
                    data = b"<html><body>Service Unavailable</body></html>"
                    self.send_header("content-type", "text/html")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                if step == "cut-mid":
                    first = {"choices": [{"index": 0, "delta": {"content": "Par"}}]}
                    self.wfile.write(f"data: {json.dumps(first)}\n\n".encode())

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.requests.append({"path": self.path, "payload": payload, "auth": self.headers.get("authorization")})
                if outer.key and self.headers.get("authorization") != f"Bearer {outer.key}":
                    return self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
                if outer.script:
                    step = outer.script.pop(0)
                    if isinstance(step, int):
                        return self._send(step, {"error": {"message": f"scripted {step}"}},
                                          {"retry-after": outer.retry_after})
                    return self._misbehave(step)
                if self.path.endswith("/embeddings"):
                    data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.5]} for i, t in enumerate(payload["input"])]
                    return self._send(200, {"data": data, "model": payload["model"]})
                words = outer.reply.split(" ")
                if not payload.get("stream"):
                    key = "text" if self.path.endswith("/completions") and "messages" not in payload else "message"
                    choice = {"index": 0, "finish_reason": "stop"}
                    choice[key] = outer.reply if key == "text" else {"role": "assistant", "content": outer.reply}
                    return self._send(200, {"choices": [choice], "usage": {"prompt_tokens": 7, "completion_tokens": len(words)}})
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    delta = {"text": piece} if "prompt" in payload else {"delta": {"content": piece}}
                    self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, **delta}]})}\n\n".encode())
                end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
                usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": len(words)}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
