//! Positions in a Kinesis shard: sequence numbers (decimal strings of up to ~130 digits) and
//! their order, a record's place (sequence number and KPL sub-record), and the range of one
//! shard's records in a batch. A leaf module: the buffer, the checkpoint and the error output all
//! speak in these terms.

use serde::{Deserialize, Serialize};

/// Orders Kinesis sequence numbers (decimal strings of up to ~130 digits) by value.
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A record's place in its shard: sequence number and, for a KPL aggregate, the index of the
/// user record inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqPos {
    /// The Kinesis sequence number, as decimal text.
    pub seq: String,
    /// Index of the user record inside a KPL aggregate; 0 for a record that is not one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sub: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SeqPos {
    /// The place of user record `sub` in the Kinesis record with sequence number `seq`.
    pub fn new(seq: &str, sub: u64) -> Self {
        SeqPos {
            seq: seq.to_string(),
            sub,
        }
    }
}

impl PartialOrd for SeqPos {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeqPos {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        seq_cmp(&self.seq, &other.seq).then(self.sub.cmp(&other.sub))
    }
}

/// The records of one shard in a batch: every record of the shard from `first` to `last`
/// (inclusive) that maps to the batch's output prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    /// The sequence number read just before `first` (`None`: the shard's start): the shard's
    /// checkpoint may not pass it until the batch is durable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The shard's first record in the batch.
    pub first: SeqPos,
    /// The shard's last record in the batch.
    pub last: SeqPos,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_by_value_and_positions_by_sub_record() {
        assert!(seq_cmp("1000", "999").is_gt());
        assert!(seq_cmp(
            "49590338271490256608559692538361571095921575989136588898",
            "49590338271490256608559692540925702759324208523137515618"
        )
        .is_lt());
        assert!(seq_cmp("007", "7").is_eq());
        assert!(SeqPos::new("10", 2) > SeqPos::new("10", 1));
        assert!(SeqPos::new("9", 5) < SeqPos::new("10", 0));
    }
}
