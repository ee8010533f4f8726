"""A fault-injecting proxy in front of the local S3 server, for the S3 fault test.

usage: s3_faults.py PORT UPSTREAM RATE SEED HANG_SECONDS

Forwards every request to UPSTREAM (http://127.0.0.1:N). A share RATE of requests, chosen by a
seeded random generator, meets a fault instead, one of:
  slowdown  503 SlowDown (S3's throttling answer), the request not forwarded
  internal  500 InternalError, not forwarded
  hang      no answer for HANG_SECONDS (longer than the client's request timeout), then closed
  cut       for a request with a body: half of the body read, then the connection closed;
            for one without: forwarded, then the connection closed before the answer
  lost      forwarded and done by S3, then the connection closed before the answer
GET /__faults answers the counts injected so far as JSON.
"""
import http.client
import json
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

port, upstream, rate, seed, hang = int(sys.argv[1]), urlparse(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
rng = random.Random(seed)
lock = threading.Lock()
counts = {"requests": 0, "slowdown": 0, "internal": 0, "hang": 0, "cut": 0, "lost": 0}
KINDS = ["slowdown", "internal", "hang", "cut", "lost"]


def error_xml(code, message):
    return f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>'.encode()


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def abort(self):
        # Close without an answer: RST, so the client sees the connection cut.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def forward(self, body):
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r, data

    def handle_any(self):
        if self.path == "/__faults":
            data = json.dumps(counts).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        length = int(self.headers.get("Content-Length") or 0)
        with lock:
            counts["requests"] += 1
            kind = rng.choice(KINDS) if rng.random() < rate else None
            if kind:
                counts[kind] += 1
        if kind == "cut" and length > 1:
            self.rfile.read(length // 2)
            return self.abort()
        body = self.rfile.read(length) if length else None
        if kind in ("slowdown", "internal"):
            data = error_xml("SlowDown", "Please reduce your request rate.") if kind == "slowdown" else error_xml("InternalError", "We encountered an internal error. Please try again.")
            self.send_response(503 if kind == "slowdown" else 500)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if kind == "hang":
            time.sleep(hang)  # the fault itself: an answer that never comes in time
            return self.abort()
        r, data = self.forward(body)
        if kind in ("cut", "lost"):
            return self.abort()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", r.getheader("Content-Length", "0"))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", port), Proxy)
# Listening now (port 0: the system's choice): say where, so the caller needs no free port
# guessed in advance and no polling.
print(server.server_address[1], flush=True)
server.serve_forever()
