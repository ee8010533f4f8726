"""Generated change histories for the snapshot tests, and the independent check of a snapshot.

usage:
  snapshot_history.py write DIR SEED ITEMS HOURS
      Writes DIR/in/HH.jsonl (one file per hour, Kinesis-for-DynamoDB JSON lines) and
      DIR/truth.json (every change, in the order it was made). Two tables: Accounts, keyed by a
      number (integers, and a few non-integers that the lake keeps as text), and Blobs, keyed by
      a binary partition key and a string sort key. Every item is inserted, updated many times,
      deleted (some by TTL), and some are inserted again after their delete; event times move
      forward in milliseconds, several changes sharing one millisecond, often of the same item
      (then the line order is the order).
  snapshot_history.py check SNAPSHOT_DIR TRUTH TABLE HOUR
      Checks the Parquet files under SNAPSHOT_DIR against the latest change of every item made
      in the hours up to HOUR (hours since the first), computed here from TRUTH alone: exactly
      the items whose latest change is no delete, each once, with that change's version, event
      time and operation. Prints the number of items.
"""
import base64
import glob
import json
import os
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

START_MS = 1_795_000_000_000 - 1_795_000_000_000 % 3_600_000  # an hour's start


def key_of(table, item):
    if table == "Accounts":
        return {"Id": {"N": item}}
    pk, sk = item
    return {"Pk": {"B": base64.b64encode(pk).decode()}, "Sk": {"S": sk}}


def write(out, seed, items, hours):
    rng = random.Random(seed)
    os.makedirs(os.path.join(out, "in"), exist_ok=True)
    # Items of both tables, each with its own list of changes to make.
    population = []
    for i in range(items):
        if i % 2 == 0:
            n = i // 2
            item = f"{n}.5" if n % 17 == 5 else str(n * 7 - 500)  # negatives, and non-integers
            population.append(("Accounts", item))
        else:
            pk = bytes([i % 251, (i * 31) % 256, 0, 255])
            population.append(("Blobs", (pk, f"s{i % 5}")))
    plans = []
    for table, item in population:
        steps = ["INSERT"] + ["MODIFY"] * rng.randint(1, 8)
        if rng.random() < 0.5:
            steps.append("TTL" if rng.random() < 0.3 else "REMOVE")
            if rng.random() < 0.4:
                steps += ["INSERT"] + ["MODIFY"] * rng.randint(0, 3)
        plans.append([table, item, steps, 0, None])
    total = sum(len(p[2]) for p in plans)
    span = hours * 3_600_000
    t = START_MS
    truth = []
    files = {}
    pending = [p for p in plans]
    n = 0
    p = None
    while pending:
        # Often the same item again in the same millisecond: then only the line order (the
        # stream's order) tells which change is the later.
        same = p in pending and rng.random() < 0.3
        if not same:
            p = rng.choice(pending)
        table, item, steps, done, image = p
        op = steps[done]
        p[3] += 1
        if p[3] == len(steps):
            pending.remove(p)
        # Time moves forward; often not at all (several changes in one millisecond).
        if not same and rng.random() < 0.6:
            t += rng.randint(1, max(1, 2 * span // total))
        t = min(t, START_MS + span - 1)
        version = n
        n += 1
        new = dict(key_of(table, item))
        new["Version"] = {"N": str(version)}
        new["Note"] = {"S": f"{op.lower()} {version}"}
        if table == "Accounts":
            new["Balance"] = {"N": f"{rng.randint(-10**6, 10**6)}.{rng.randint(0, 99):02d}"}
        else:
            new["Doc"] = {"M": {"state": {"S": rng.choice(["a", "b"])}, "n": {"N": str(version)}}}
        ddb = {"ApproximateCreationDateTime": t, "Keys": key_of(table, item), "SizeBytes": 100}
        name = "REMOVE" if op == "TTL" else op
        if name != "REMOVE":
            ddb["NewImage"] = new
        if image is not None:
            ddb["OldImage"] = image
        p[4] = None if name == "REMOVE" else new
        record = {"awsRegion": "us-east-1", "eventID": f"e{version}", "eventName": name,
                  "recordFormat": "application/json", "tableName": table,
                  "eventSource": "aws:dynamodb", "dynamodb": ddb}
        if op == "TTL":
            record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        hour = (t - START_MS) // 3_600_000
        files.setdefault(hour, []).append(json.dumps(record))
        truth.append({"table": table, "key": key_repr(table, item), "op": name, "time_ms": t,
                      "hour": hour, "version": version, "ttl": op == "TTL"})
    for hour, lines in files.items():
        with open(os.path.join(out, "in", f"{hour:02d}.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f)
    print(len(truth))


def key_repr(table, item):
    if table == "Accounts":
        return f"N:{item}"
    pk, sk = item
    return f"B:{pk.hex()}|S:{sk}"


def snapshot_key(table, row):
    if table == "Accounts":
        v = row.get("id")
        return f"N:{v if v is not None else row.get('id_str')}"
    return f"B:{row['pk'].hex()}|S:{row['sk']}"


def check(snapshot_dir, truth_path, table, hour):
    truth = json.load(open(truth_path))
    latest = {}
    for c in truth:  # in the order the changes were made
        if c["table"] == table and c["hour"] <= hour:
            latest[c["key"]] = c
    want = {k: c for k, c in latest.items() if c["op"] != "REMOVE"}
    files = sorted(glob.glob(os.path.join(snapshot_dir, "*.parquet")))
    rows = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default").to_pylist() if files else []
    got = {}
    for r in rows:
        k = snapshot_key(table, r)
        assert k not in got, f"item {k} twice"
        got[k] = r
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)})"
    for k, c in want.items():
        r = got[k]
        assert r["version"] == c["version"], (k, r["version"], c)
        assert r["cdc_event_time_us"] == c["time_ms"] * 1000, (k, r, c)
        assert r["cdc_operation"] == c["op"], (k, r["cdc_operation"], c)
    print(len(want))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
