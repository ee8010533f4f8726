//! Snapshots in the crash simulation. A table's change log grows hour by hour, with files that
//! arrive late in hours a snapshot has already taken in; snapshots are made as of later and later
//! hours, each run killed after a random number of durable writes to the in-memory store (every
//! request after that fails, as for a dead process) and started again until one finishes, with
//! memory budgets that split the buckets or not. Checked after every kill: the pointer is the one
//! before, or, when the kill came after it, names a complete snapshot. After every finished run:
//! the current snapshot holds exactly the rows of one made from scratch, without crashes, from the
//! change log alone as of the same hour, and only it and the one before it are left.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::store::Crashing;
use crate::config::{ConfigFile, Settings};
use crate::schema::{ColumnType, Image, TableSchema};
use crate::snapshot::{self, SnapshotOptions};
use crate::store::Location;

const FIRST_HOUR: i64 = 498_611; // 2026-11-18T11

fn location(store: Arc<dyn ObjectStore>) -> Location {
    Location {
        store,
        prefix: Path::from(""),
        url: "memory://lake".into(),
        s3: false,
    }
}

fn table() -> TableSchema {
    let mut s = TableSchema::new("Items", None);
    s.add_attr_column(Image::New, &["id"], ColumnType::String, 100)
        .expect("a column");
    s.add_attr_column(Image::New, &["v"], ColumnType::Bigint, 100)
        .expect("a column");
    s.learn_keys(&["id"]);
    s
}

fn settings() -> Settings {
    let mut c = ConfigFile::default();
    c.output.url = Some("/unused".into());
    c.validate().expect("valid settings")
}

/// One change-log file of `rows` changes of items `i0..i{items}` at times within `hour`, in the
/// order of `next` (event ids); its Parquet bytes as the export writes them.
fn change_file(
    rng: &mut ChaCha8Rng,
    hour: i64,
    rows: usize,
    items: u32,
    next: &mut u64,
) -> Vec<u8> {
    let mut schema = table();
    let arrow = schema.arrow_schema();
    let mut op = Vec::new();
    let (mut id, mut ev, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rows {
        *next += 1;
        op.push(["INSERT", "MODIFY", "MODIFY", "REMOVE"][rng.random_range(0..4)]);
        id.push(format!("i{}", rng.random_range(0..items)));
        ev.push(format!("e{next}"));
        // Several changes in one millisecond now and then: the file's line then decides.
        t.push(hour * 3_600_000_000 + rng.random_range(0..60) * 60_000_000);
        v.push(*next as i64);
    }
    let columns: Vec<ArrayRef> = arrow
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "cdc_operation" => Arc::new(StringArray::from(op.clone())),
                "cdc_event_id" => Arc::new(StringArray::from(ev.clone())),
                "cdc_event_time_us" => Arc::new(Int64Array::from(t.clone())),
                "cdc_source_line" => Arc::new(Int64Array::from_iter_values(1..=rows as i64)),
                "cdc_source_file" => Arc::new(StringArray::from(vec![format!("f{next}"); rows])),
                "id" => Arc::new(StringArray::from(id.clone())),
                "v" => Arc::new(Int64Array::from(v.clone())),
                _ => arrow_array::new_null_array(f.data_type(), rows),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(arrow.clone(), columns).expect("a batch");
    crate::encode::encode(&arrow, vec![batch], &Default::default()).expect("encodes")
}

fn folder(hour: i64) -> String {
    let t = chrono::DateTime::from_timestamp(hour * 3600, 0).expect("a time");
    format!("items/{}", t.format("%Y/%m/%d/%H"))
}

/// The rows (id, v, operation) of the current snapshot in `store`, sorted.
async fn current_rows(store: Arc<dyn ObjectStore>, s: &Settings) -> Vec<(String, i64, String)> {
    let lake = location(store.clone());
    let (_, manifest) = snapshot::current(&lake, s, "items")
        .await
        .expect("readable")
        .expect("a current snapshot");
    let mut rows = Vec::new();
    for (_, rel, _, _) in &manifest.data {
        let bytes = store
            .get(&Path::from(rel.as_str()))
            .await
            .expect("the current snapshot's file exists")
            .bytes()
            .await
            .expect("read");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("parquet")
            .build()
            .expect("a reader");
        for b in reader {
            let b = b.expect("a batch");
            let ids = b
                .column_by_name("id")
                .expect("id")
                .as_string::<i32>()
                .clone();
            let vs = b
                .column_by_name("v")
                .expect("v")
                .as_primitive::<Int64Type>()
                .clone();
            let ops = b
                .column_by_name("cdc_operation")
                .expect("op")
                .as_string::<i32>()
                .clone();
            for i in 0..b.num_rows() {
                rows.push((
                    ids.value(i).to_string(),
                    vs.value(i),
                    ops.value(i).to_string(),
                ));
            }
        }
    }
    rows.sort();
    rows
}

async fn pointer(store: &InMemory, s: &Settings) -> Option<bytes::Bytes> {
    let p = Path::from(format!("{}/snapshots/items/CURRENT.json", s.state_prefix));
    store.get(&p).await.ok()?.bytes().await.ok()
}

/// Plays one history; returns (snapshot runs, kills).
fn history(seed: u64, rt: &tokio::runtime::Runtime) -> (u64, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = settings();
    let inner = Arc::new(InMemory::new());
    let items = rng.random_range(3..40);
    let mut next = 0u64;
    let (mut runs, mut kills) = (0, 0);
    let mut hour = 0i64;
    for _step in 0..rng.random_range(2..5) {
        // New hours of changes, and now and then a file late in an hour already taken in.
        for _ in 0..rng.random_range(1..4) {
            for _ in 0..rng.random_range(1..3) {
                let rows = rng.random_range(1..30);
                let bytes = change_file(&mut rng, FIRST_HOUR + hour, rows, items, &mut next);
                let path = Path::from(format!(
                    "{}/items-{next}.parquet",
                    folder(FIRST_HOUR + hour)
                ));
                rt.block_on(inner.put(&path, bytes.into())).expect("put");
            }
            hour += 1;
        }
        if hour > 1 && rng.random_ratio(1, 2) {
            let late = FIRST_HOUR + rng.random_range(0..hour - 1);
            let rows = rng.random_range(1..10);
            let bytes = change_file(&mut rng, late, rows, items, &mut next);
            let path = Path::from(format!("{}/items-{next}.parquet", folder(late)));
            rt.block_on(inner.put(&path, bytes.into())).expect("put");
        }
        let opts = SnapshotOptions {
            table: None,
            as_of: Some(FIRST_HOUR + hour - 1),
            key: Vec::new(),
            margin_us: crate::item::order::DEFAULT_MARGIN_US,
            memory_budget: [4 << 10, 64 << 10, 64 << 20][rng.random_range(0..3)],
            threads: 2,
            now_hour: 0,
        };
        let before = rt.block_on(pointer(&inner, &s));
        loop {
            runs += 1;
            let budget = (rng.random_ratio(2, 3)).then(|| rng.random_range(0..30));
            let store = Arc::new(Crashing::new(inner.clone(), budget));
            let lake = location(store.clone());
            let r = rt.block_on(snapshot::run_in(&lake, &s, vec![table()], &opts));
            if !store.crashed() {
                let done = r.unwrap_or_else(|e| panic!("seed {seed}: failed without a kill: {e}"));
                assert_eq!(done.len(), 1, "seed {seed}");
                break;
            }
            kills += 1;
            let now = rt.block_on(pointer(&inner, &s));
            if now != before {
                // Killed after the pointer (while deleting older snapshots): the snapshot it
                // names is complete.
                rt.block_on(current_rows(inner.clone(), &s));
            }
        }
        // The same rows as a snapshot from scratch of the change log alone.
        let scratch = Arc::new(InMemory::new());
        rt.block_on(async {
            let listed: Vec<_> = inner.list_all(Some(&Path::from("items"))).await;
            for meta in listed {
                let bytes = inner
                    .get(&meta.location)
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("bytes");
                scratch
                    .put(&meta.location, bytes.into())
                    .await
                    .expect("put");
            }
        });
        let fresh = SnapshotOptions {
            memory_budget: 64 << 20,
            ..opts.clone()
        };
        rt.block_on(snapshot::run_in(
            &location(scratch.clone()),
            &s,
            vec![table()],
            &fresh,
        ))
        .unwrap_or_else(|e| panic!("seed {seed}: from scratch: {e}"));
        let (got, want) = rt.block_on(async {
            (
                current_rows(inner.clone(), &s).await,
                current_rows(scratch.clone(), &s).await,
            )
        });
        assert_eq!(
            got, want,
            "seed {seed}: incremental with kills against from scratch"
        );
        // Only the current snapshot and the one before it are left.
        let kept: BTreeSet<String> = rt.block_on(async {
            inner
                .list_all(Some(&Path::from("items_current")))
                .await
                .into_iter()
                .filter_map(|m| m.location.as_ref().split('/').nth(1).map(str::to_string))
                .collect()
        });
        assert!(kept.len() <= 2, "seed {seed}: {kept:?}");
    }
    (runs, kills)
}

trait ListAll {
    async fn list_all(&self, prefix: Option<&Path>) -> Vec<object_store::ObjectMeta>;
}

impl ListAll for InMemory {
    async fn list_all(&self, prefix: Option<&Path>) -> Vec<object_store::ObjectMeta> {
        use futures::TryStreamExt;
        self.list(prefix).try_collect().await.expect("listing")
    }
}

#[test]
fn snapshots_killed_at_any_write_stay_exact() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let seeds: u64 = std::env::var("DDB_LAKE_SIM_SNAPSHOT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let (mut runs, mut kills) = (0, 0);
    for seed in 0..seeds {
        let (r, k) = history(seed, &rt);
        runs += r;
        kills += k;
    }
    eprintln!("{seeds} snapshot histories: {runs} runs, {kills} killed");
    assert!(kills > seeds, "kills happen: {kills} in {runs} runs");
}
