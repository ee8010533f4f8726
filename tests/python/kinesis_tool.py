"""Test-side helper for the local Kinesis server (kinesis-mock), through boto3.

usage:
  kinesis_tool.py create STREAM SHARDS
  kinesis_tool.py put STREAM FILE [FIRST_LINE LAST_LINE [KPL_EVERY]]
                                                           put lines of a JSON-lines file as records;
                                                           with KPL_EVERY=N, every N-th record is a
                                                           KPL aggregate of the next 3 lines
  kinesis_tool.py put-keyed STREAM FILE FIRST_LINE LAST_LINE
                                                           put change records with the item's key as
                                                           the partition key (an item's changes go to
                                                           one shard at a time, as DynamoDB's do)
  kinesis_tool.py split STREAM SHARD_ID                    split a shard in the middle of its range
  kinesis_tool.py merge STREAM                             merge the first two adjacent open shards
  kinesis_tool.py shards STREAM                            print shards as JSON
  kinesis_tool.py now -                                    print the current UTC time (RFC 3339)
"""
import json
import os
import sys
import time

import boto3

k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name="us-east-1")


def wait_active(name):
    for _ in range(600):
        if k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)  # polling the server's state, with a bound
    raise SystemExit(f"stream {name} did not become active")


def open_shards(name):
    shards = k.list_shards(StreamName=name)["Shards"]
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


cmd, name = sys.argv[1], sys.argv[2]
if cmd == "create":
    k.create_stream(StreamName=name, ShardCount=int(sys.argv[3]))
    wait_active(name)
elif cmd == "put":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import kpl

    lines = open(sys.argv[3], "rb").read().splitlines()
    lo, hi = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (0, len(lines))
    kpl_every = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    records = []
    i = lo
    while i < hi:
        if kpl_every and len(records) % kpl_every == kpl_every - 1 and i + 3 <= hi:
            records.append({"Data": kpl.aggregate(lines[i:i + 3], f"key-{i}"), "PartitionKey": f"key-{i}"})
            i += 3
        else:
            records.append({"Data": lines[i], "PartitionKey": f"key-{i}"})
            i += 1
    for start in range(0, len(records), 500):
        r = k.put_records(StreamName=name, Records=records[start:start + 500])
        if r["FailedRecordCount"]:
            raise SystemExit(f"records not accepted: {r}")
    print(hi - lo)
elif cmd == "put-keyed":
    lines = open(sys.argv[3], "rb").read().splitlines()
    lo, hi = int(sys.argv[4]), int(sys.argv[5])
    records = [{"Data": line, "PartitionKey": json.dumps(json.loads(line)["dynamodb"]["Keys"], sort_keys=True)}
               for line in lines[lo:hi]]
    # One at a time: PutRecords does not promise the order of the records it is given.
    for r in records:
        k.put_record(StreamName=name, Data=r["Data"], PartitionKey=r["PartitionKey"])
    print(hi - lo)
elif cmd == "split":
    shard = next(s for s in open_shards(name) if s["ShardId"] == sys.argv[3])
    lo = int(shard["HashKeyRange"]["StartingHashKey"])
    hi = int(shard["HashKeyRange"]["EndingHashKey"])
    k.split_shard(StreamName=name, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((lo + hi) // 2))
    wait_active(name)
elif cmd == "merge":
    shards = sorted(open_shards(name), key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    for a, b in zip(shards, shards[1:]):
        if int(a["HashKeyRange"]["EndingHashKey"]) + 1 == int(b["HashKeyRange"]["StartingHashKey"]):
            k.merge_shards(StreamName=name, ShardToMerge=a["ShardId"], AdjacentShardToMerge=b["ShardId"])
            wait_active(name)
            break
    else:
        raise SystemExit("no adjacent shards")
elif cmd == "now":
    # The current time as RFC 3339 with milliseconds (for AT_TIMESTAMP starts).
    import datetime
    print(datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
elif cmd == "shards":
    print(json.dumps(k.list_shards(StreamName=name)["Shards"]))
else:
    raise SystemExit(__doc__)
