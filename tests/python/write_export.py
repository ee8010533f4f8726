"""Writes a DynamoDB table export in AWS's layout, independently of ddb-lake's reader.

usage: write_export.py ROOT TABLE FORMAT TYPE ITEMS FILES SEED

- ROOT/AWSDynamoDB/{export_id}/manifest-summary.json, manifest-files.json (one line per data
  file: itemCount, md5Checksum = base64 of the MD5 of the gzip object, etag, dataFileS3Key with
  the export prefix `exports`), and data/{name}.json.gz or .ion.gz (a full export's under its
  folder, an incremental one's in the AWSDynamoDB/data/ folder incremental exports share), plus
  one empty data file, as AWS writes for an empty partition.
- FORMAT: DYNAMODB_JSON or ION (written with the amazon-ion package); TYPE: FULL_EXPORT or
  INCREMENTAL_EXPORT (ITEMS items inserted, every third then modified, every fifth deleted).
- A stray data file that the manifest does not name, as another export sharing the data
  folder would leave: a reader that lists the folder reads it and fails the check.
- ROOT/expected.json: the rows a lake must hold, one per item (full) or change (incremental).
Prints the export's folder.
"""
import base64, decimal, gzip, hashlib, json, os, random, sys

from amazon.ion import simpleion
from amazon.ion.simple_types import IonPyList
from amazon.ion.core import IonType

root, table, fmt, etype, items, nfiles, seed = sys.argv[1:8]
items, nfiles, seed = int(items), int(nfiles), int(seed)
rng = random.Random(seed)
export_id = f"0179500000{seed:04d}-{rng.randrange(16**8):08x}"
folder = os.path.join(root, "AWSDynamoDB", export_id)
# Full exports keep their data under their own folder; incremental ones share
# AWSDynamoDB/data/ with the other incremental exports of the prefix.
shared = os.path.join(root, "AWSDynamoDB", "data")
data_dir = shared if etype == "INCREMENTAL_EXPORT" else os.path.join(folder, "data")
data_key = "AWSDynamoDB/data" if etype == "INCREMENTAL_EXPORT" else f"AWSDynamoDB/{export_id}/data"
os.makedirs(folder, exist_ok=True)
os.makedirs(data_dir, exist_ok=True)
export_time = "2026-11-20T10:15:30.250Z"
export_time_us = 1795169730250000  # 2026-11-20T10:15:30.250Z


def item(i, version):
    """Item i at a version: a plain Python dict of (type, value)."""
    return {
        "Id": ("N", str(i)),
        "Name": ("S", f"name-{i}-\u00e9\"{version}"),
        "Amount": ("N", str(decimal.Decimal(rng.randrange(10**6)) / 100 + version)),
        "Tags": ("SS", sorted({f"t{rng.randrange(5)}" for _ in range(3)})),
        "Blob": ("B", bytes([i % 256, version, 255])),
        "Flag": ("BOOL", i % 2 == 0),
        "Gone": ("NULL", True),
        "Nested": ("M", {"city": ("S", f"c{i % 7}"), "n": ("N", str(version))}),
        "List": ("L", [("N", str(i)), ("S", "x")]),
    }


def ddb_json(value):
    t, v = value
    if t == "B":
        return {"B": base64.b64encode(v).decode()}
    if t == "M":
        return {"M": {k: ddb_json(x) for k, x in v.items()}}
    if t == "L":
        return {"L": [ddb_json(x) for x in v]}
    return {t: v}


def ion(value):
    t, v = value
    if t == "S":
        return v
    if t == "N":
        return decimal.Decimal(v)
    if t == "B":
        return v
    if t == "BOOL":
        return v
    if t == "NULL":
        return None
    if t == "SS":
        return IonPyList.from_value(IonType.LIST, list(v), annotations=("$dynamodb_SS",))
    if t == "M":
        return {k: ion(x) for k, x in v.items()}
    if t == "L":
        return [ion(x) for x in v]
    raise ValueError(t)


def image(it):
    if fmt == "ION":
        return {k: ion(v) for k, v in it.items()}
    return {k: ddb_json(v) for k, v in it.items()}


def expect(op, time_us, it, i):
    row = {"id": i, "op": op, "time_us": time_us}
    if it is not None:
        row.update(name=it["Name"][1], amount=it["Amount"][1], tags=it["Tags"][1],
                   blob=base64.b64encode(it["Blob"][1]).decode(), flag=it["Flag"][1],
                   city=it["Nested"][1]["city"][1])
    return row


lines, expected = [], []
if etype == "FULL_EXPORT":
    for i in range(items):
        it = item(i, 0)
        lines.append({"Item": image(it)})
        expected.append(expect("SNAPSHOT", export_time_us, it, i))
else:
    t = export_time_us - 3_600_000_000
    changes = []
    for i in range(items):
        changes.append(("INSERT", i, None, item(i, 0)))
    for i in range(0, items, 3):
        changes.append(("MODIFY", i, item(i, 0), item(i, 1)))
    for i in range(0, items, 5):
        changes.append(("REMOVE", i, item(i, 1 if i % 3 == 0 else 0), None))
    for op, i, old, new in changes:
        t += rng.randrange(1, 1000)
        keys = {"Id": ("N", str(i))}
        meta = {"WriteTimestampMicros": t if fmt == "ION" else {"N": str(t)}}
        line = {"Metadata": meta, "Keys": image(keys)}
        if new is not None:
            line["NewImage"] = image(new)
        if old is not None:
            line["OldImage"] = image(old)
        lines.append(line)
        expected.append(expect(op, t, new if new is not None else old, i))

ext = "ion.gz" if fmt == "ION" else "json.gz"
prefix = "exports"
entries = []
chunks = [lines[k::nfiles] for k in range(nfiles)] + [[]]
for k, chunk in enumerate(chunks):
    if fmt == "ION":
        text = "\n".join(("$ion_1_0 " if n == 0 else "") + simpleion.dumps(l, binary=False, omit_version_marker=True)
                         for n, l in enumerate(chunk))
    else:
        text = "\n".join(json.dumps(l, ensure_ascii=False) for l in chunk)
    body = gzip.compress((text + "\n").encode() if chunk else b"", mtime=0)
    name = f"{hashlib.sha1(f'{seed}-{k}'.encode()).hexdigest()[:26]}.{ext}"
    with open(os.path.join(data_dir, name), "wb") as f:
        f.write(body)
    entries.append({"itemCount": len(chunk), "md5Checksum": base64.b64encode(hashlib.md5(body).digest()).decode(),
                    "etag": hashlib.md5(body).hexdigest(),
                    "dataFileS3Key": f"{prefix}/{data_key}/{name}"})
# Another export's file in the shared data folder.
with open(os.path.join(data_dir, f"zzzzstray.{ext}"), "wb") as f:
    f.write(gzip.compress(b"not a line of this export\n", mtime=0))

with open(os.path.join(folder, "manifest-files.json"), "w") as f:
    f.write("".join(json.dumps(e) + "\n" for e in entries))
summary = {
    "version": "2023-08-01" if etype == "INCREMENTAL_EXPORT" else "2020-06-30",
    "exportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/export/{export_id}",
    "startTime": export_time, "endTime": "2026-11-20T10:25:00.000Z",
    "tableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}",
    "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
    "s3Bucket": "bucket", "s3Prefix": prefix, "s3SseAlgorithm": "AES256", "s3SseKmsKeyId": None,
    "manifestFilesS3Key": f"{prefix}/AWSDynamoDB/{export_id}/manifest-files.json",
    "billedSizeBytes": 0, "itemCount": len(lines), "outputFormat": fmt, "exportType": etype,
}
if etype == "FULL_EXPORT":
    summary["exportTime"] = export_time
else:
    summary.update(exportFromTime="2026-11-20T09:15:30.250Z", exportToTime=export_time,
                   outputView="NEW_AND_OLD_IMAGES")
with open(os.path.join(folder, "manifest-summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
with open(os.path.join(root, "expected.json"), "w") as f:
    json.dump({"export_id": export_id, "rows": expected}, f)
print(folder)
