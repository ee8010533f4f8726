//! The writer's order with data files written concurrently: files between two other messages
//! overlap, every other message waits for the files before it, and none after it starts first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use tokio::sync::{mpsc, Barrier, Notify};

use super::writer::{write_all, DataFile, Out, RowOrder, Save};
use crate::buffer::FlushReason;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::ConfigFile;
use crate::store::Location;
use crate::summary::Counters;

/// An in-memory store that logs when each put starts and ends, and holds every put of a
/// `.parquet` object until four of them are in progress at once. A `fail.parquet` then fails,
/// and a `slow.parquet` waits for that failure before it goes on.
#[derive(Debug)]
struct Overlapping {
    inner: InMemory,
    log: Mutex<Vec<String>>,
    data: Barrier,
    failed: Notify,
}

impl std::fmt::Display for Overlapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Overlapping")
    }
}

impl Overlapping {
    fn event(&self, e: String) {
        self.log.lock().expect("not poisoned").push(e);
    }
}

#[async_trait]
impl ObjectStore for Overlapping {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.event(format!("start {location}"));
        if location.as_ref().ends_with(".parquet") {
            self.data.wait().await;
        }
        if location.as_ref().ends_with("fail.parquet") {
            self.failed.notify_one();
            return Err(object_store::Error::Generic {
                store: "test",
                source: "refused".into(),
            });
        }
        if location.as_ref().ends_with("slow.parquet") {
            self.failed.notified().await;
        }
        let r = self.inner.put_opts(location, payload, opts).await;
        self.event(format!("end {location}"));
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

fn store() -> (Arc<Overlapping>, Location) {
    let store = Arc::new(Overlapping {
        inner: InMemory::new(),
        log: Mutex::new(Vec::new()),
        data: Barrier::new(4),
        failed: Notify::new(),
    });
    let location = Location {
        store: store.clone(),
        prefix: Path::default(),
        url: "memory://lake".into(),
        s3: false,
    };
    (store, location)
}

fn settings() -> crate::config::Settings {
    let mut config = ConfigFile::default();
    config.output.url = Some("memory://lake".into());
    let settings = config.validate().expect("valid config");
    assert!(
        settings.concurrent_writes >= 4,
        "the default overlaps four files"
    );
    settings
}

fn data(name: &str) -> Out {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    Out::Data {
        file: DataFile {
            path: format!("t/{name}.parquet"),
            rows: 1,
            table: "t".into(),
            reason: FlushReason::Size,
            create_only: false,
            order: RowOrder::AsRead,
        },
        schema,
        batches: vec![batch],
    }
}

/// Four files, a checkpoint, four more: each group of four is in progress at once (the store
/// lets none finish before four have started: one write at a time would never finish), and the
/// checkpoint is saved after the first four are durable and before the next four start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_overlap_and_other_messages_wait_for_them() {
    let (store, location) = store();
    let checkpoints = CheckpointStore::at(location.clone(), "cp.json", false);

    let (tx, rx) = mpsc::channel(16);
    for i in 0..4 {
        tx.send((data(&format!("f{i}")), None)).await.unwrap();
    }
    let cp = Checkpoint {
        stream: "s".into(),
        ..Checkpoint::default()
    };
    tx.send((Out::Checkpoint(Box::new(cp), Save::Commit), None))
        .await
        .unwrap();
    for i in 4..8 {
        tx.send((data(&format!("f{i}")), None)).await.unwrap();
    }
    drop(tx);
    let run = write_all(
        rx,
        Some(location),
        Some(checkpoints),
        settings(),
        false,
        Arc::new(Counters::default()),
    );
    // A guard against a hang, not a timing assertion: with one write at a time the store's
    // barrier is never passed.
    let stats = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("four data files were never in progress at once")
        .expect("the writer succeeds");

    let log = store.log.lock().unwrap().clone();
    let at = |e: &str| {
        log.iter()
            .position(|l| l == e)
            .unwrap_or_else(|| panic!("{e} in {log:?}"))
    };
    let (cp_start, cp_end) = (at("start cp.json"), at("end cp.json"));
    for i in 0..4 {
        assert!(at(&format!("end t/f{i}.parquet")) < cp_start, "{log:?}");
    }
    for i in 4..8 {
        assert!(at(&format!("start t/f{i}.parquet")) > cp_end, "{log:?}");
    }
    // Counted in the order sent, whichever finished first.
    let paths: Vec<_> = stats.objects.iter().map(|o| o.path.clone()).collect();
    let sent: Vec<_> = (0..8).map(|i| format!("t/f{i}.parquet")).collect();
    assert_eq!(paths, sent);
    assert_eq!(stats.files, 8);
}

/// A put that fails while others are in flight fails the run, but only once the others are done:
/// none is cut off midway (on S3, an incomplete upload or a staged object left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_lets_the_others_finish() {
    let (store, location) = store();
    let (tx, rx) = mpsc::channel(16);
    for name in ["a", "fail", "b", "slow"] {
        tx.send((data(name), None)).await.unwrap();
    }
    drop(tx);
    let run = write_all(
        rx,
        Some(location),
        None,
        settings(),
        false,
        Arc::new(Counters::default()),
    );
    let err = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("four data files were never in progress at once")
        .err()
        .expect("the failed put fails the run");
    assert!(err.to_string().contains("fail.parquet"), "{err}");
    let log = store.log.lock().unwrap().clone();
    assert!(log.contains(&"end t/slow.parquet".to_string()), "{log:?}");
}
