//! Exactly-once output for stream runs (docs/DESIGN.md, "Exactly once").
//!
//! A flush group becomes durable in three writes: the *intent* checkpoint names every object of
//! the group and the records each holds (per shard, the first and last position of the records
//! mapping to its prefix); then the objects are written, each only if absent; then the *commit*
//! checkpoint moves the group into `written`. A run that starts from a checkpoint with pending
//! batches re-creates each from the same records under the same name ([`Replay`]), and skips the
//! records that `written` says are durable already.

use std::collections::{BTreeMap, HashMap};

use arrow_array::RecordBatch;

use super::writer::Out;
use crate::buffer::{Chunk, CHUNK_ROWS};
use crate::checkpoint::{Checkpoint, PendingBatch};
use crate::flatten::Row;
use crate::schema::TableSchema;
use crate::seq::{seq_cmp, SeqPos};

/// An object of the group being prepared, with what the checkpoint must know about it.
pub(super) struct Held {
    pub out: Out,
    pub batch: PendingBatch,
}

/// Where a record read again goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Already in a durable object.
    Skip,
    /// Belongs to the pending batch with this index.
    Recreate(usize),
    /// Not written before: buffered as usual.
    New,
}

/// A pending batch of the previous run being re-created.
struct Recreating {
    batch: PendingBatch,
    rows: u64,
    chunk: Chunk,
    batches: Vec<RecordBatch>,
    entries: Vec<(Option<crate::reject::StreamKey>, Vec<u8>)>,
    done: bool,
}

/// What a re-created batch holds once complete.
pub(super) enum Recreated {
    Data(Vec<RecordBatch>),
    Errors(Vec<u8>),
}

/// The previous run's progress, as the records are read again.
pub(super) struct Replay {
    /// Output prefix → shard id → last durable position.
    written: HashMap<String, HashMap<String, SeqPos>>,
    recreating: Vec<Recreating>,
    /// Manifest name → objects not yet re-created.
    manifests_left: HashMap<String, usize>,
    /// Records skipped as already durable.
    pub skipped: u64,
}

impl Replay {
    pub(super) fn new(cp: &Checkpoint) -> Self {
        let mut manifests_left: HashMap<String, usize> = HashMap::new();
        for b in &cp.pending {
            if let Some(m) = &b.manifest {
                *manifests_left.entry(m.clone()).or_default() += 1;
            }
        }
        Replay {
            written: cp
                .written
                .iter()
                .map(|(p, s)| (p.clone(), s.clone().into_iter().collect()))
                .collect(),
            recreating: cp
                .pending
                .iter()
                .map(|b| Recreating {
                    batch: b.clone(),
                    rows: 0,
                    chunk: Chunk::new(),
                    batches: Vec::new(),
                    entries: Vec::new(),
                    done: false,
                })
                .collect(),
            manifests_left,
            skipped: 0,
        }
    }

    /// Whether anything is left to skip or re-create.
    pub(super) fn active(&self) -> bool {
        !self.written.is_empty() || self.recreating.iter().any(|r| !r.done)
    }

    /// Forgets what a shard's reading has passed: its later records cannot be at or before
    /// `seq`, so entries up to it can no longer match (and replay goes quiet once all are gone).
    pub(super) fn passed(&mut self, shard: &str, seq: &str) {
        for per_shard in self.written.values_mut() {
            if per_shard
                .get(shard)
                .is_some_and(|p| seq_cmp(&p.seq, seq).is_lt())
            {
                per_shard.remove(shard);
            }
        }
        self.written.retain(|_, s| !s.is_empty());
    }

    pub(super) fn route(&self, prefix: &str, shard: &str, at: &SeqPos) -> Route {
        for (i, r) in self.recreating.iter().enumerate() {
            if r.done || r.batch.prefix != prefix {
                continue;
            }
            if let Some(range) = r.batch.shards.get(shard) {
                if range.first <= *at && *at <= range.last {
                    return Route::Recreate(i);
                }
            }
        }
        match self.written.get(prefix).and_then(|s| s.get(shard)) {
            Some(durable) if at <= durable => Route::Skip,
            _ => Route::New,
        }
    }

    /// Adds a row to a data batch being re-created; returns the batch and its rows once complete.
    pub(super) fn add_row(
        &mut self,
        i: usize,
        schema: &TableSchema,
        row: &Row,
    ) -> Option<(PendingBatch, Recreated)> {
        let r = &mut self.recreating[i];
        r.chunk.push(schema, row);
        if r.chunk.rows() >= CHUNK_ROWS {
            r.batches.push(r.chunk.finish());
        }
        r.rows += 1;
        if r.rows < r.batch.rows {
            return None;
        }
        if r.chunk.rows() > 0 {
            r.batches.push(r.chunk.finish());
        }
        r.done = true;
        Some((
            r.batch.clone(),
            Recreated::Data(std::mem::take(&mut r.batches)),
        ))
    }

    /// Adds an error entry (read from `shard` at `at`) to an error file being re-created;
    /// returns it once complete, its entries in the same order as the first attempt's.
    pub(super) fn add_entry(
        &mut self,
        i: usize,
        shard: &str,
        at: SeqPos,
        line: &[u8],
    ) -> Option<(PendingBatch, Recreated)> {
        let r = &mut self.recreating[i];
        r.entries
            .push((Some((shard.to_string(), at)), line.to_vec()));
        r.rows += 1;
        if r.rows < r.batch.rows {
            return None;
        }
        r.done = true;
        let entries = std::mem::take(&mut r.entries);
        Some((
            r.batch.clone(),
            Recreated::Errors(crate::reject::assemble(entries)),
        ))
    }

    /// Counts a re-created object of a manifest; returns the manifest's objects once all are.
    pub(super) fn manifest_done(&mut self, manifest: &str) -> Option<Vec<String>> {
        let left = self.manifests_left.get_mut(manifest)?;
        *left -= 1;
        if *left > 0 {
            return None;
        }
        self.manifests_left.remove(manifest);
        let mut objects: Vec<String> = self
            .recreating
            .iter()
            .filter(|r| r.batch.manifest.as_deref() == Some(manifest))
            .map(|r| r.batch.object.clone())
            .collect();
        objects.sort();
        Some(objects)
    }

    /// Batches of the previous run not re-created yet (they stay pending in checkpoints).
    pub(super) fn incomplete(&self) -> impl Iterator<Item = &PendingBatch> {
        self.recreating.iter().filter(|r| !r.done).map(|r| &r.batch)
    }
}

/// `a` or `b`, whichever is earlier, where `None` is a shard's start.
pub(super) fn earlier<'a>(
    a: Option<Option<&'a str>>,
    b: Option<&'a str>,
) -> Option<Option<&'a str>> {
    Some(match (a, b) {
        (None, b) => b,
        (Some(None), _) | (_, None) => None,
        (Some(Some(x)), Some(y)) => Some(if seq_cmp(y, x).is_lt() { y } else { x }),
    })
}

/// Moves committed batches into `written`, and drops what the shards' checkpoints cover.
pub(super) fn commit(cp: &mut Checkpoint, committed: &[PendingBatch]) {
    for b in committed {
        let entry = cp.written.entry(b.prefix.clone()).or_default();
        for (shard, range) in &b.shards {
            match entry.get_mut(shard) {
                Some(pos) if *pos >= range.last => {}
                Some(pos) => *pos = range.last.clone(),
                None => {
                    entry.insert(shard.clone(), range.last.clone());
                }
            }
        }
    }
    let shards = &cp.shards;
    for per_shard in cp.written.values_mut() {
        per_shard.retain(|shard, pos| {
            let covered = shards
                .get(shard)
                .and_then(|c| c.sequence_number.as_deref())
                .is_some_and(|c| seq_cmp(&pos.seq, c).is_le());
            let finished = shards.get(shard).is_some_and(|c| c.finished);
            !covered && !finished
        });
    }
    cp.written.retain(|_, s| !s.is_empty());
}

/// The manifest name of a group's files of one table: named by the objects it lists, so that a
/// re-created group writes the same manifest again.
pub(super) fn manifest_name(state_prefix: &str, table: &str, objects: &[String]) -> String {
    let mut sorted: Vec<&str> = objects.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let hash = crate::store::short_hash(sorted.join("\n").as_bytes(), 8);
    format!("{state_prefix}/manifests/{table}/manifest-{hash}.json")
}

/// Groups pending batches' objects by manifest.
pub(super) fn manifests_of(batches: &[PendingBatch]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in batches {
        if let Some(m) = &b.manifest {
            out.entry(m.clone()).or_default().push(b.object.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::ShardCheckpoint;
    use crate::seq::ShardRange;

    fn batch(prefix: &str, shard: &str, first: &str, last: &str, rows: u64) -> PendingBatch {
        PendingBatch {
            object: format!("{prefix}x.parquet"),
            prefix: prefix.into(),
            table: Some("t".into()),
            rows,
            manifest: Some("m".into()),
            hour: None,
            shards: [(
                shard.to_string(),
                ShardRange {
                    after: None,
                    first: SeqPos::new(first, 0),
                    last: SeqPos::new(last, 0),
                },
            )]
            .into(),
        }
    }

    #[test]
    fn routes_pending_written_and_new_records() {
        let mut cp = Checkpoint::default();
        cp.written
            .entry("t/a/t-".into())
            .or_default()
            .insert("s0".into(), SeqPos::new("20", 0));
        cp.pending.push(batch("t/b/t-", "s0", "15", "30", 2));
        let r = Replay::new(&cp);
        assert_eq!(r.route("t/a/t-", "s0", &SeqPos::new("19", 3)), Route::Skip);
        assert_eq!(r.route("t/a/t-", "s0", &SeqPos::new("21", 0)), Route::New);
        assert_eq!(r.route("t/a/t-", "s1", &SeqPos::new("1", 0)), Route::New);
        assert_eq!(
            r.route("t/b/t-", "s0", &SeqPos::new("15", 0)),
            Route::Recreate(0)
        );
        assert_eq!(r.route("t/b/t-", "s0", &SeqPos::new("31", 0)), Route::New);
        assert!(r.active());
        let mut r = r;
        r.passed("s0", "20"); // kept: not passed beyond the entry
        assert_eq!(r.route("t/a/t-", "s0", &SeqPos::new("20", 0)), Route::Skip);
        r.passed("s0", "21"); // forgotten: no later record of s0 can be at 20
        assert_eq!(r.route("t/a/t-", "s0", &SeqPos::new("20", 0)), Route::New);
        assert!(r.active(), "the pending batch is still to be re-created");
    }

    #[test]
    fn commit_moves_batches_to_written_and_prunes() {
        let mut cp = Checkpoint::default();
        cp.shards.insert(
            "s0".into(),
            ShardCheckpoint {
                sequence_number: Some("10".into()),
                ..ShardCheckpoint::default()
            },
        );
        commit(
            &mut cp,
            &[
                batch("p/", "s0", "5", "9", 1),
                batch("q/", "s0", "11", "12", 1),
            ],
        );
        assert!(!cp.written.contains_key("p/"), "covered by the checkpoint");
        assert_eq!(cp.written["q/"]["s0"], SeqPos::new("12", 0));
        cp.shards.get_mut("s0").unwrap().sequence_number = Some("12".into());
        commit(&mut cp, &[]);
        assert!(cp.written.is_empty());
    }

    #[test]
    fn manifests_are_named_by_their_objects() {
        let a = manifest_name("_s", "t", &["b".into(), "a".into()]);
        assert_eq!(a, manifest_name("_s", "t", &["a".into(), "b".into()]));
        assert_ne!(a, manifest_name("_s", "t", &["a".into()]));
    }

    #[test]
    fn earlier_treats_none_as_the_start() {
        assert_eq!(earlier(None, Some("5")), Some(Some("5")));
        assert_eq!(earlier(Some(Some("7")), Some("5")), Some(Some("5")));
        assert_eq!(earlier(Some(Some("7")), None), Some(None));
    }
}
