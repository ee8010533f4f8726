//! The simulation's object store: an in-memory store that dies after a given number of writes.
//!
//! A process killed after its `n`-th durable write leaves exactly those writes behind. Every
//! request after the `n`-th write fails (reads too: the process is gone), so the run stops at its
//! next step, as a killed process would, and the next run starts from what the store holds.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

/// Writes left before the crash (`None`: never crashes).
#[derive(Debug, Default)]
struct Budget {
    left: Mutex<Option<u64>>,
    /// Durable writes so far.
    writes: Mutex<u64>,
    /// Crash right after the n-th write to this path.
    after: Option<(String, Mutex<u64>)>,
}

impl Budget {
    fn dead(&self) -> bool {
        *self.left.lock().expect("not poisoned") == Some(0)
    }

    fn check(&self) -> object_store::Result<()> {
        if self.dead() {
            return Err(crashed());
        }
        Ok(())
    }

    /// Takes one write (to `path`) from the budget, or fails if none is left.
    fn write(&self, path: &Path) -> object_store::Result<()> {
        let mut left = self.left.lock().expect("not poisoned");
        match *left {
            Some(0) => return Err(crashed()),
            Some(n) => *left = Some(n - 1),
            None => {}
        }
        *self.writes.lock().expect("not poisoned") += 1;
        if std::env::var_os("DDB_LAKE_SIM_TRACE").is_some() {
            eprintln!("sim: wrote {path}");
        }
        if let Some((p, n)) = &self.after {
            if p.as_str() == path.as_ref() {
                let mut n = n.lock().expect("not poisoned");
                *n -= 1;
                if *n == 0 {
                    *left = Some(0);
                }
            }
        }
        Ok(())
    }
}

fn crashed() -> object_store::Error {
    object_store::Error::Generic {
        store: "sim",
        source: "the simulated process has crashed".into(),
    }
}

/// An in-memory store, shared by every run of a history, seen through a crash budget.
#[derive(Debug)]
pub(super) struct Crashing {
    inner: Arc<InMemory>,
    budget: Arc<Budget>,
    /// Where writes of hour markers and their manifests are recorded (every version).
    log: Option<Log>,
}

/// Paths and contents written, in order.
pub(super) type Log = Arc<Mutex<Vec<(String, bytes::Bytes)>>>;

impl Crashing {
    /// A view of `inner` that allows `writes` more writes (`None`: any number).
    pub(super) fn new(inner: Arc<InMemory>, writes: Option<u64>) -> Self {
        Crashing {
            inner,
            budget: Arc::new(Budget {
                left: Mutex::new(writes),
                writes: Mutex::new(0),
                after: None,
            }),
            log: None,
        }
    }

    /// A view of `inner` that crashes right after the `n`-th write to `path`.
    pub(super) fn after_writes_to(inner: Arc<InMemory>, path: &str, n: u64) -> Self {
        Crashing {
            inner,
            budget: Arc::new(Budget {
                left: Mutex::new(None),
                writes: Mutex::new(0),
                after: Some((path.to_string(), Mutex::new(n))),
            }),
            log: None,
        }
    }

    /// Records every durable write under `_ddb_lake/hours/` in `log`.
    pub(super) fn logging(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }

    /// Whether the budget ran out.
    pub(super) fn crashed(&self) -> bool {
        self.budget.dead()
    }

    /// Durable writes made through this view.
    pub(super) fn writes(&self) -> u64 {
        *self.budget.writes.lock().expect("not poisoned")
    }
}

impl std::fmt::Display for Crashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crashing({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Crashing {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.budget.check()?;
        let logged = self
            .log
            .as_ref()
            .filter(|_| location.as_ref().contains("/hours/"))
            .map(|log| {
                (
                    log,
                    bytes::Bytes::from(
                        payload.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>(),
                    ),
                )
            });
        // A write that fails its condition changes nothing: it takes no budget.
        let r = self.inner.put_opts(location, payload, opts).await?;
        self.budget.write(location)?;
        if let Some((log, body)) = logged {
            log.lock()
                .expect("not poisoned")
                .push((location.to_string(), body));
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.budget.check()?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(Upload {
            upload,
            path: location.clone(),
            budget: self.budget.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.budget.check()?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        if self.budget.check().is_err() {
            return futures::stream::once(async { Err(crashed()) }).boxed();
        }
        let budget = self.budget.clone();
        self.inner
            .delete_stream(locations)
            .map(move |r| {
                let p = r?;
                budget.write(&p)?;
                Ok(p)
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.budget.dead() {
            return futures::stream::once(async { Err(crashed()) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.budget.check()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.budget.check()?;
        self.inner.copy_opts(from, to, options).await?;
        self.budget.write(to)
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.budget.check()?;
        self.inner.rename_opts(from, to, options).await?;
        self.budget.write(to)
    }
}

/// A multipart upload whose completion is the durable write.
#[derive(Debug)]
struct Upload {
    upload: Box<dyn MultipartUpload>,
    path: Path,
    budget: Arc<Budget>,
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if self.budget.dead() {
            return Box::pin(async { Err(crashed()) });
        }
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.budget.check()?;
        let r = self.upload.complete().await?;
        self.budget.write(&self.path)?;
        Ok(r)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.upload.abort().await
    }
}
