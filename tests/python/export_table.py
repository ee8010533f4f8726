"""Exports a table of DynamoDB Local as ExportTableToPointInTime would (DynamoDB Local has no
point-in-time recovery and no exports): a Scan of the table written in AWS's full-export layout,
DYNAMODB_JSON, independently of ddb-lake's reader.

usage: export_table.py ROOT TABLE EXPORT_TIME_MS
- ROOT/AWSDynamoDB/{export_id}/manifest-summary.json (exportTime = EXPORT_TIME_MS),
  manifest-files.json (itemCount, md5Checksum = base64 MD5 of the gzip object) and
  data/*.json.gz: the items in two data files, one line `{"Item": {...}}` each.
Prints the export's folder.
"""
import base64, datetime, gzip, hashlib, json, os, sys

import boto3

root, table, export_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"], region_name="us-east-1")
table_arn = ddb.describe_table(TableName=table)["Table"]["TableArn"]
items = []
for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
    items.extend(page["Items"])


def plain(v):
    """boto3's typed value as DynamoDB JSON (binary as base64 text)."""
    (t, x), = v.items()
    if t == "B":
        return {"B": base64.b64encode(bytes(x)).decode()}
    if t == "BS":
        return {"BS": [base64.b64encode(bytes(b)).decode() for b in x]}
    if t == "M":
        return {"M": {k: plain(y) for k, y in x.items()}}
    if t == "L":
        return {"L": [plain(y) for y in x]}
    return {t: x}


export_id = f"{export_ms:014d}-{hashlib.sha1(table.encode()).hexdigest()[:8]}"
folder = os.path.join(root, "AWSDynamoDB", export_id)
os.makedirs(os.path.join(folder, "data"), exist_ok=True)
when = datetime.datetime.fromtimestamp(export_ms / 1000, datetime.timezone.utc)
stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{export_ms % 1000:03d}Z"
entries = []
for k, chunk in enumerate([items[0::2], items[1::2]]):
    text = "".join(json.dumps({"Item": {a: plain(v) for a, v in it.items()}}) + "\n" for it in chunk)
    body = gzip.compress(text.encode(), mtime=0)
    name = f"{hashlib.sha1(f'{export_id}-{k}'.encode()).hexdigest()[:26]}.json.gz"
    with open(os.path.join(folder, "data", name), "wb") as f:
        f.write(body)
    entries.append({"itemCount": len(chunk), "md5Checksum": base64.b64encode(hashlib.md5(body).digest()).decode(),
                    "etag": hashlib.md5(body).hexdigest(), "dataFileS3Key": f"AWSDynamoDB/{export_id}/data/{name}"})
with open(os.path.join(folder, "manifest-files.json"), "w") as f:
    f.write("".join(json.dumps(e) + "\n" for e in entries))
summary = {
    "version": "2020-06-30", "exportArn": f"{table_arn}/export/{export_id}",
    "startTime": stamp, "endTime": stamp, "exportTime": stamp, "tableArn": table_arn,
    "s3Bucket": "bucket", "s3Prefix": None, "manifestFilesS3Key": f"AWSDynamoDB/{export_id}/manifest-files.json",
    "billedSizeBytes": 0, "itemCount": len(items), "outputFormat": "DYNAMODB_JSON", "exportType": "FULL_EXPORT",
}
with open(os.path.join(folder, "manifest-summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
print(folder)
