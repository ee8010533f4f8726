"""A proxy in front of DynamoDB Local's DynamoDB Streams API that plays 24-hour retention: every
record of the shards given whose sequence number is below a bound has been trimmed.

usage: streams_trim.py PORT UPSTREAM AGE_MS SHARD=SEQ [SHARD=SEQ ...]

With AGE_MS above 0 every shard looks AGE_MS older than it is: the creation time in its id
(`shardId-00000001796418175502-e4a79ddb`, milliseconds) is moved back in every answer and forward
again in every request, so that a shard of a table made a second ago plays one made days ago.

For each SHARD, the records below SEQ (by value) are gone, as DynamoDB Streams trims them:
  GetRecords            answers without them (an iterator from TRIM_HORIZON starts at the
                        oldest record left)
  GetShardIterator      AFTER_SEQUENCE_NUMBER / AT_SEQUENCE_NUMBER below the bound answers 400
                        TrimmedDataAccessException, as the service does; TRIM_HORIZON starts
                        at the oldest record left (LATEST when none is left)
Everything else (DescribeStream with each shard's StartingSequenceNumber, other shards) is
DynamoDB Local's own answer. The x-amz-crc32 of a changed answer is computed again. Prints the
port it listens on (port 0: the system's choice).
"""
import http.client
import json
import re
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

port, upstream, age = int(sys.argv[1]), urlparse(sys.argv[2]), int(sys.argv[3])
trimmed = {k: int(v) for k, v in (a.split("=", 1) for a in sys.argv[4:])}
SHARD_ID = re.compile(rb"shardId-(\d{20})-")


def shifted(data, by):
    return SHARD_ID.sub(lambda m: b"shardId-%020d-" % (int(m.group(1)) + by), data)
# The shard of each iterator handed out (DynamoDB Local's iterators are opaque text).
iterators = {}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, headers, data):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server", "x-amz-crc32"):
                self.send_header(k, v)
        data = shifted(data, -age)
        self.send_header("x-amz-crc32", str(zlib.crc32(data)))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = shifted(self.rfile.read(int(self.headers.get("Content-Length") or 0)), age)
        target = self.headers.get("X-Amz-Target", "")
        req = json.loads(body or b"{}")
        if target.endswith(".GetShardIterator") and req.get("ShardId") in trimmed:
            bound = trimmed[req["ShardId"]]
            seq = req.get("SequenceNumber")
            if seq is not None and int(seq) < bound:
                data = json.dumps({
                    "__type": "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException",
                    "message": "The operation attempted to read past the oldest stream record in a shard.",
                }).encode()
                return self.answer(400, [("Content-Type", "application/x-amz-json-1.0")], data)
        if target.endswith(".GetShardIterator") and req.get("ShardId") in trimmed and req.get("ShardIteratorType") == "TRIM_HORIZON":
            first = self.oldest_left(req, trimmed[req["ShardId"]])
            req = dict(req, ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=first) if first else dict(req, ShardIteratorType="LATEST")
            body = json.dumps(req).encode()
        r, data = self.upstream(target, body)
        if r.status == 200 and target.endswith(".GetShardIterator"):
            iterators[json.loads(data)["ShardIterator"]] = req.get("ShardId")
        if r.status == 200 and target.endswith(".GetRecords"):
            out = json.loads(data)
            shard = iterators.get(req.get("ShardIterator"))
            if out.get("NextShardIterator"):
                iterators[out["NextShardIterator"]] = shard
            if shard in trimmed:
                bound = trimmed[shard]
                out["Records"] = [x for x in out.get("Records", []) if int(x["dynamodb"]["SequenceNumber"]) >= bound]
                data = json.dumps(out).encode()
        self.answer(r.status, r.getheaders(), data)

    def upstream(self, target, body):
        # DynamoDB Local does not check signatures: a changed body goes with the same headers.
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length", "x-amz-target")}
        headers["X-Amz-Target"] = target
        headers["Content-Length"] = str(len(body))
        conn.request("POST", self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r, data

    def oldest_left(self, req, bound):
        # The first record at or above the bound, read from DynamoDB Local's TRIM_HORIZON.
        prefix = self.headers.get("X-Amz-Target").rsplit(".", 1)[0]
        _, data = self.upstream(prefix + ".GetShardIterator", json.dumps(dict(req, ShardIteratorType="TRIM_HORIZON")).encode())
        it = json.loads(data).get("ShardIterator")
        while it:
            _, data = self.upstream(prefix + ".GetRecords", json.dumps({"ShardIterator": it}).encode())
            page = json.loads(data)
            for x in page.get("Records", []):
                if int(x["dynamodb"]["SequenceNumber"]) >= bound:
                    return x["dynamodb"]["SequenceNumber"]
            if not page.get("Records"):
                return None
            it = page.get("NextShardIterator")
        return None


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", port), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()
