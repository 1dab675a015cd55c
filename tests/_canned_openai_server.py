"""A stand-alone OpenAI-compatible server for tests: ``python _canned_openai_server.py REPLY LOG``.

It binds a free port on 127.0.0.1, prints the port on one line, then answers every
``POST /v1/chat/completions`` with the text of the file REPLY as the assistant's message and
appends each request (path and JSON body) to the JSONL file LOG. Other paths get 404.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(reply: Path, log: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with log.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"path": self.path, "body": body}) + "\n")
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            message = {"role": "assistant", "content": reply.read_text(encoding="utf-8")}
            payload = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "canned-test-model",
                                  "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        print(httpd.server_address[1], flush=True)
        httpd.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), Path(sys.argv[2]))
