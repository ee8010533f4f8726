//! String limits: text longer than a limit is kept, cut (and flagged in `cdc_truncated`) or sends
//! its record to the error output, per column (Redshift VARCHAR holds at most 65,535 bytes).

use std::borrow::Cow;

use super::{Cell, Row};
use crate::schema::{Meta, TableSchema};

/// What happens to a text value longer than the limit (Redshift VARCHAR stops at 65,535 bytes and
/// COPY from Parquet cannot truncate, so one long value fails a whole COPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringPolicy {
    /// Write it whole (Athena has no such limit).
    #[default]
    Keep,
    /// Cut it at the limit (on a character boundary) and name the column in `cdc_truncated`.
    Truncate,
    /// Send the whole record to the error output (reason `string_too_long`).
    Reject,
}

/// The string limit: a default policy and per-column overrides (by column name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringLimit {
    /// Longest text value, in UTF-8 bytes, that is written as it is (default 65,535).
    pub max_bytes: usize,
    /// What happens to longer text in columns that `columns` does not name.
    pub policy: StringPolicy,
    /// Per-column policies, looked up by name; shared, immutable after validation.
    pub columns: &'static [(String, StringPolicy)],
}

impl Default for StringLimit {
    fn default() -> Self {
        StringLimit {
            max_bytes: 65_535,
            policy: StringPolicy::Keep,
            columns: &[],
        }
    }
}

impl StringLimit {
    fn policy_for(&self, column: &str) -> StringPolicy {
        self.columns
            .iter()
            .find(|(c, _)| c == column)
            .map_or(self.policy, |(_, p)| *p)
    }
}

/// Cuts or flags text over the limit, per the column's policy.
pub(super) fn apply_string_limit(schema: &TableSchema, row: &mut Row, limit: StringLimit) {
    if limit.policy == StringPolicy::Keep && limit.columns.is_empty() {
        return;
    }
    for (col, cell) in row.cells.iter_mut() {
        let Cell::Str(text) = cell else { continue };
        if text.len() <= limit.max_bytes {
            continue;
        }
        match limit.policy_for(&schema.columns()[*col].name) {
            StringPolicy::Keep => {}
            StringPolicy::Reject => {
                row.too_long.get_or_insert(*col);
            }
            StringPolicy::Truncate => {
                let mut end = limit.max_bytes;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.to_mut().truncate(end);
                row.truncated.push(*col);
            }
        }
    }
    if !row.truncated.is_empty() {
        let names: Vec<&str> = row
            .truncated
            .iter()
            .map(|c| schema.columns()[*c].name.as_str())
            .collect();
        let col = schema.meta_index(Meta::Truncated);
        row.cells
            .push((col, Cell::Str(Cow::Owned(names.join(",")))));
    }
}
