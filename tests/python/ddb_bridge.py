"""Test-side bridge standing in for DynamoDB's "Kinesis Data Streams" destination, which no local
server implements: tails a table's DynamoDB Stream on DynamoDB Local and puts each change into a
Kinesis stream in the Kinesis-for-DynamoDB JSON shape (shared FORMATS.md 1.1).

usage: ddb_bridge.py TABLE KINESIS_STREAM EXPECTED_CHANGES
Forwards changes until EXPECTED_CHANGES were put (or 60 s pass), then prints the count.
"""
import base64
import datetime
import json
import os
import sys
import time

import boto3

table, stream, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
region = "us-east-1"
ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"], region_name=region)
streams = boto3.client("dynamodbstreams", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"], region_name=region)
kinesis = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name=region)

arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
iterators = {}
for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
    iterators[shard["ShardId"]] = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]

sent = 0
deadline = time.time() + 60
while sent < expected and time.time() < deadline:
    for shard_id, it in list(iterators.items()):
        if it is None:
            continue
        resp = streams.get_records(ShardIterator=it)
        iterators[shard_id] = resp.get("NextShardIterator")
        for r in resp["Records"]:
            d = r["dynamodb"]
            when = d["ApproximateCreationDateTime"]
            ms = int(when.timestamp() * 1000) if isinstance(when, datetime.datetime) else int(when * 1000)
            body = {k: d[k] for k in ("Keys", "NewImage", "OldImage", "SizeBytes") if k in d}
            record = {
                "awsRegion": region,
                "eventID": r["eventID"],
                "eventName": r["eventName"],
                "userIdentity": r.get("userIdentity"),
                "recordFormat": "application/json",
                "tableName": table,
                "dynamodb": {"ApproximateCreationDateTime": ms,
                             "ApproximateCreationDateTimePrecision": "MILLISECOND", **body},
                "eventSource": "aws:dynamodb",
            }
            key = json.dumps(d["Keys"], sort_keys=True, default=lambda b: base64.b64encode(b).decode())
            # Binary values travel as base64 text, as in the JSON DynamoDB writes to Kinesis.
            data = json.dumps(record, default=lambda b: base64.b64encode(b).decode()).encode()
            kinesis.put_record(StreamName=stream, Data=data, PartitionKey=key)
            sent += 1
    if sent < expected:
        time.sleep(0.1)  # polling the stream for new changes, bounded by the deadline
print(sent)
