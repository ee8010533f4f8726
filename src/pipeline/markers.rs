//! Hour markers, the reading side's part: which hours of each table have rows and no marker yet,
//! which are marked, how far each shard's partition time went, and rows that came late.

use std::collections::{BTreeMap, BTreeSet};

pub(super) const HOUR_US: i64 = 3_600_000_000;

/// Hour-marker bookkeeping of the reading side.
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// Per table: hours with rows and no marker yet.
    pub(super) open_hours: BTreeMap<String, BTreeSet<i64>>,
    /// Per table: the last hour marked complete.
    pub(super) marked_through: BTreeMap<String, i64>,
    /// Per shard (index): the latest partition time processed.
    pub(super) event_max: Vec<Option<i64>>,
    /// Late rows per table.
    pub(super) late: BTreeMap<String, u64>,
}

impl Marks {
    /// Notes a row of `table` in `hour`; returns whether it is late (its hour is marked).
    pub(super) fn place(&mut self, table: &str, hour: i64) -> bool {
        if self.marked_through.get(table).is_some_and(|&m| hour <= m) {
            *self.late.entry(table.to_string()).or_default() += 1;
            return true;
        }
        if !self
            .open_hours
            .get(table)
            .is_some_and(|h| h.contains(&hour))
        {
            self.open_hours
                .entry(table.to_string())
                .or_default()
                .insert(hour);
        }
        false
    }
}
