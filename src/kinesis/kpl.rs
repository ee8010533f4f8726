//! De-aggregation of Kinesis Producer Library (KPL) records: the magic `F3 89 9A C2`, a protobuf
//! `AggregatedRecord`, and the MD5 of that protobuf. DynamoDB never aggregates; other producers
//! writing DynamoDB-shaped records into the stream may. A record that has the magic but a bad
//! digest or protobuf is treated as a plain record (as the KCL does).

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

/// The four bytes that open every KPL-aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// The KPL's `AggregatedRecord` protobuf: the user records of one Kinesis record.
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    /// Partition keys of the user records, referred to by index.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// Explicit hash keys of the user records, referred to by index; often empty.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records, in the order they were aggregated.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<SubRecord>,
}

/// One user record inside an [`AggregatedRecord`].
#[derive(Clone, PartialEq, Message)]
pub struct SubRecord {
    /// Index of this record's partition key in `partition_key_table`.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    /// Index of this record's explicit hash key in `explicit_hash_key_table`, if it has one.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The user record's payload.
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
}

/// The user records inside an aggregated record, or `None` if `data` is not one.
pub fn deaggregate(data: &Bytes) -> Option<Vec<Bytes>> {
    if data.len() < MAGIC.len() + DIGEST_LEN || data[..4] != MAGIC {
        return None;
    }
    let body = &data[4..data.len() - DIGEST_LEN];
    let digest = &data[data.len() - DIGEST_LEN..];
    if Md5::digest(body).as_slice() != digest {
        return None;
    }
    let agg = AggregatedRecord::decode(data.slice(4..data.len() - DIGEST_LEN)).ok()?;
    Some(agg.records.into_iter().map(|r| r.data).collect())
}

/// Builds an aggregated record (as the KPL does), for tests and tools.
pub fn aggregate(records: &[&[u8]]) -> Vec<u8> {
    let agg = AggregatedRecord {
        partition_key_table: vec!["pk".into()],
        explicit_hash_key_table: vec![],
        records: records
            .iter()
            .map(|d| SubRecord {
                partition_key_index: 0,
                explicit_hash_key_index: None,
                data: Bytes::copy_from_slice(d),
            })
            .collect(),
    };
    let body = agg.encode_to_vec();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let agg = Bytes::from(aggregate(&[b"{\"a\":1}", b"{\"a\":2}"]));
        let parts = deaggregate(&agg).unwrap();
        assert_eq!(
            parts,
            vec![
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"{\"a\":2}")
            ]
        );
        // Plain JSON, a bad digest, a short record: not aggregated.
        assert!(deaggregate(&Bytes::from_static(b"{\"a\":1}")).is_none());
        let mut bad = agg.to_vec();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(deaggregate(&Bytes::from(bad)).is_none());
        assert!(deaggregate(&Bytes::from_static(&MAGIC)).is_none());
    }
}
