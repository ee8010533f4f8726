//! DynamoDB Streams' 24-hour retention: whether a shard still holds every change the lake has not
//! read, where a shard's reading starts, and the message when it does not. Pure decisions; the
//! calls that gather their inputs are in the adapter.
//!
//! A shard start is checked where a gap is possible:
//! - after a sequence number (a checkpoint) that the service refuses: the checkpoint is older
//!   than the shard's oldest record when it sorts before it (AWS answers
//!   TrimmedDataAccessException, DynamoDB Local a ValidationException);
//! - at a time (a start saved by `--start latest`, `at_timestamp` or `bootstrap`) more than 24
//!   hours ago, in a shard created more than 24 hours ago (its id says when; a younger shard has
//!   lost nothing yet);
//! - from its start, for a child whose parent is listed (the parent was read here, so the lake
//!   claims the child's every change), when the shard was created more than 24 hours ago.
//!
//! The shard holds everything the lake needs from a time on when its oldest retained record was
//! created at or before that time's minute, and everything after a checkpoint when its oldest
//! record is at or before it. Otherwise the changes between the start and the oldest retained
//! record may be gone, and no listing can tell whether there were any (a shard's
//! `StartingSequenceNumber` cannot: DynamoDB Local's is a stream-wide counter at the shard's
//! creation, not its first record's): the run stops and says so.

use crate::seq::seq_cmp;

/// How long DynamoDB Streams keeps a record.
pub(super) const RETENTION_MS: i64 = 24 * 3_600_000;

/// The oldest record a shard still retains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Oldest {
    /// Its sequence number.
    pub(super) seq: String,
    /// Its creation time (ApproximateCreationDateTime), milliseconds since the epoch.
    pub(super) created_ms: i64,
}

/// Where the lake needs a shard's reading to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need<'a> {
    /// Right after this sequence number (the shard's checkpoint).
    After(&'a str),
    /// At this time, milliseconds since the epoch (a start at a time).
    Time(i64),
    /// At the shard's first record (a child shard whose parent was read here).
    ShardStart,
}

/// Changes that may have been trimmed before the lake read them: after `from`, before `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lost {
    pub(super) from: String,
    pub(super) to: String,
}

/// Whether a start needs the oldest retained record looked up: a time more than the retention
/// ago (in a shard not known to be younger), or a child shard created more than the retention
/// ago (from its id; a shard id of another form is not checked). Starts after a sequence number
/// are checked only when the service refuses them.
pub(super) fn worth_checking(need: Need<'_>, shard: &str, now_ms: i64) -> bool {
    let old = |t: i64| t < now_ms - RETENTION_MS;
    match need {
        Need::After(_) => false,
        Need::Time(t) => old(t) && created_ms(shard).is_none_or(old),
        Need::ShardStart => created_ms(shard).is_some_and(old),
    }
}

/// What may be missing for a start at `need`, given the shard's oldest retained record; `None`
/// when the shard holds everything from the start on.
pub(super) fn missing(need: Need<'_>, oldest: Option<&Oldest>) -> Option<Lost> {
    let from = match need {
        Need::After(s) => format!("sequence number {s}"),
        Need::Time(t) => format!("{} (where the shard's reading starts)", rfc3339(t)),
        Need::ShardStart => "the shard's start".to_string(),
    };
    let Some(o) = oldest else {
        return Some(Lost {
            from,
            to: "the shard's end (it retains no record)".into(),
        });
    };
    let covered = match need {
        Need::After(s) => seq_cmp(s, &o.seq).is_ge(),
        Need::Time(t) => o.created_ms <= t.div_euclid(60_000) * 60_000,
        Need::ShardStart => false,
    };
    (!covered).then(|| Lost {
        from,
        to: format!("sequence number {}, the oldest still retained", o.seq),
    })
}

/// A DynamoDB Streams shard's creation time, from its id (`shardId-00000001414562045508-2bac9cd2`:
/// milliseconds since the epoch); `None` for another form or an implausible time.
pub(super) fn created_ms(shard: &str) -> Option<i64> {
    let digits = shard.strip_prefix("shardId-")?.split('-').next()?;
    let ms: i64 = digits.parse().ok()?;
    // 2012-01-01 .. 2200-01-01
    (1_325_376_000_000..7_258_118_400_000)
        .contains(&ms)
        .then_some(ms)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| format!("{ms} ms"), |t| t.to_rfc3339())
}

/// The message for changes trimmed before the lake read them.
pub(super) fn trimmed_message(arn: &str, shard: &str, lost: &Lost) -> String {
    format!(
        "changes may have been lost: stream {arn}, shard {shard}: the records after {} and before {}, if there were any, were trimmed (DynamoDB Streams keeps 24 hours) before this lake read them. Load them from a table export (ddb-lake export --input of an export), then acknowledge with --accept-lost-shard {shard} (the shard is then read from its oldest retained record) and run again",
        lost.from, lost.to
    )
}

/// The warning when a shard's oldest unread change nears the retention limit (`age_ms` old,
/// over `warn_after_ms`); `None` below it.
pub(super) fn nearing_message(age_ms: i64, warn_after_ms: i64) -> Option<String> {
    (age_ms > warn_after_ms).then(|| {
        format!(
            "the oldest unread change of this shard is {:.1} hours old: DynamoDB Streams trims after 24 hours, and changes not read by then are lost",
            age_ms as f64 / 3_600_000.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = RETENTION_MS;

    fn oldest(seq: &str, created_ms: i64) -> Oldest {
        Oldest {
            seq: seq.into(),
            created_ms,
        }
    }

    #[test]
    fn a_checkpoint_before_the_oldest_retained_record_lost_changes() {
        let o = oldest("000000000000000000500", 0);
        let lost = missing(Need::After("000000000000000000100"), Some(&o)).unwrap();
        assert_eq!(lost.from, "sequence number 000000000000000000100");
        assert!(lost.to.contains("000000000000000000500"), "{}", lost.to);
        // At or past the oldest retained record: nothing is missing (the refusal was another
        // error, which the caller reports as it is).
        assert_eq!(missing(Need::After("500"), Some(&o)), None);
        assert_eq!(missing(Need::After("900"), Some(&o)), None);
        // The shard holds nothing any more: everything after the checkpoint is gone.
        assert!(missing(Need::After("100"), None).is_some());
    }

    #[test]
    fn a_start_at_a_time_is_covered_by_a_record_from_before_its_minute() {
        let start = 10 * 60_000 + 30_000; // 00:10:30
                                          // The oldest retained record was created in the start's minute: it is covered.
        assert_eq!(
            missing(Need::Time(start), Some(&oldest("7", 10 * 60_000))),
            None
        );
        assert_eq!(missing(Need::Time(start), Some(&oldest("7", 60_000))), None);
        // Created after it: the changes in between may be gone.
        let lost = missing(Need::Time(start), Some(&oldest("7", 11 * 60_000))).unwrap();
        assert!(lost.from.contains("1970-01-01T00:10:30"), "{}", lost.from);
        assert!(lost.to.contains("sequence number 7"), "{}", lost.to);
        // A shard that holds nothing cannot show that it lost nothing.
        assert!(missing(Need::Time(start), None).is_some());
    }

    #[test]
    fn a_child_shard_older_than_the_retention_cannot_show_its_first_record() {
        let lost = missing(Need::ShardStart, Some(&oldest("9", 0))).unwrap();
        assert_eq!(lost.from, "the shard's start");
        assert!(missing(Need::ShardStart, None).is_some());
    }

    #[test]
    fn only_starts_older_than_the_retention_are_looked_up() {
        let now = 1_800_000_000_000;
        let id = |created: i64| format!("shardId-{created:020}-0344dcfa");
        let (old, young) = (id(now - DAY - 1), id(now - 3_600_000));
        // A time over a day ago, in a shard that old or of unknown age.
        assert!(worth_checking(Need::Time(now - DAY - 1), &old, now));
        assert!(worth_checking(
            Need::Time(now - DAY - 1),
            "shardId-000000000003",
            now
        ));
        // A younger shard has lost nothing yet, nor has any shard since a recent time.
        assert!(!worth_checking(Need::Time(now - DAY - 1), &young, now));
        assert!(!worth_checking(Need::Time(now - DAY + 60_000), &old, now));
        assert!(!worth_checking(Need::After("1"), &old, now));
        assert!(worth_checking(Need::ShardStart, &old, now));
        assert!(!worth_checking(Need::ShardStart, &young, now));
        assert!(!worth_checking(
            Need::ShardStart,
            "shardId-000000000003",
            now
        ));
        assert_eq!(
            created_ms("shardId-00000001796417641129-0344dcfa"),
            Some(1_796_417_641_129)
        );
    }

    #[test]
    fn the_messages_name_the_shard_the_range_and_the_way_on() {
        let lost = Lost {
            from: "sequence number 100".into(),
            to: "sequence number 250, the oldest still retained".into(),
        };
        let m = trimmed_message("arn:s", "shardId-9", &lost);
        assert!(m.contains("arn:s") && m.contains("shardId-9"), "{m}");
        assert!(
            m.contains("after sequence number 100 and before sequence number 250"),
            "{m}"
        );
        assert!(m.contains("--accept-lost-shard shardId-9"), "{m}");
        assert_eq!(nearing_message(19 * 3_600_000, 20 * 3_600_000), None);
        let warn = nearing_message(21 * 3_600_000, 20 * 3_600_000).unwrap();
        assert!(warn.contains("21.0 hours old"), "{warn}");
    }
}
