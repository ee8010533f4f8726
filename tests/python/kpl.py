"""KPL record aggregation (the format the Kinesis Producer Library writes), for the tests.

An aggregated record is the magic bytes F3 89 9A C2, a protobuf `AggregatedRecord`
(1: repeated string partition_key_table, 2: repeated string explicit_hash_key_table,
3: repeated Record records, each 1: partition_key_index, 2: explicit_hash_key_index, 3: data),
and the MD5 of the protobuf bytes.
"""
import hashlib

MAGIC = b"\xf3\x89\x9a\xc2"


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number, wire, payload):
    key = _varint((number << 3) | wire)
    if wire == 0:
        return key + _varint(payload)
    return key + _varint(len(payload)) + payload


def aggregate(records, partition_key="k"):
    """One aggregated record holding `records` (a list of bytes), all under one partition key."""
    body = _field(1, 2, partition_key.encode())
    for data in records:
        rec = _field(1, 0, 0) + _field(3, 2, data)
        body += _field(3, 2, rec)
    return MAGIC + body + hashlib.md5(body).digest()


def _read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def _fields(buf):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"unexpected wire type {wire}")
        yield number, value


def deaggregate(data):
    """The user records of a Kinesis record: its parts if it is a KPL aggregate, else None."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 16:
        return None
    body, digest = data[len(MAGIC):-16], data[-16:]
    if hashlib.md5(body).digest() != digest:
        return None
    out = []
    for number, value in _fields(body):
        if number == 3:
            out.extend(v for n, v in _fields(value) if n == 3)
    return out
