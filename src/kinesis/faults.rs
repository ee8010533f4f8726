//! Fault injection for a [`StreamApi`]: wraps a real client and fails a share of calls with
//! throttling, expired iterators or transient errors, deterministically for a seed, and can take
//! one shard down for a number of calls (an outage). Used by tests to prove that faults are
//! survived without loss; never enabled by the CLI.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ApiError, RecordBatch, Shard, StartAt, StreamApi};

/// Counts of injected faults.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    /// GetRecords calls failed as throttled (ProvisionedThroughputExceeded).
    pub throttled: u64,
    /// GetRecords calls failed with an expired iterator.
    pub expired: u64,
    /// GetRecords calls failed with a transient network error.
    pub transient: u64,
    /// Calls failed by the shard outage.
    pub outage: u64,
}

/// A [`StreamApi`] that passes calls to `inner` but fails some of them, for tests.
pub struct Faulty<A> {
    inner: A,
    /// Share of get_records calls that fail (0.0 to 1.0).
    rate: f64,
    seed: u64,
    /// One generator per shard, so that a shard's faults depend on the seed and that shard's own
    /// calls only, not on how concurrent shard readers interleave.
    rngs: Mutex<HashMap<String, ChaCha8Rng>>,
    injected: Mutex<Injected>,
    /// The shard that is down, and for how many more of its calls.
    outage: Mutex<Option<(String, u64)>>,
    /// Which shard each iterator handed out reads.
    shard_of: Mutex<HashMap<String, String>>,
}

impl<A: StreamApi> Faulty<A> {
    /// Wraps `inner`, failing a `rate` share (0.0 to 1.0) of GetRecords calls, chosen by `seed`.
    pub fn new(inner: A, rate: f64, seed: u64) -> Self {
        Faulty {
            inner,
            rate,
            seed,
            rngs: Mutex::new(HashMap::new()),
            injected: Mutex::new(Injected::default()),
            outage: Mutex::new(None),
            shard_of: Mutex::new(HashMap::new()),
        }
    }

    /// Fails the next `calls` calls for `shard` (iterators and reads) as unavailable.
    pub fn with_outage(self, shard: &str, calls: u64) -> Self {
        *self.outage.lock().expect("not poisoned") = Some((shard.to_string(), calls));
        self
    }

    fn down(&self, shard: Option<&str>) -> Option<ApiError> {
        let mut outage = self.outage.lock().expect("not poisoned");
        match (&mut *outage, shard) {
            (Some((s, left)), Some(shard)) if s == shard && *left > 0 => {
                *left -= 1;
                self.injected.lock().expect("not poisoned").outage += 1;
                Some(ApiError::Transient(format!(
                    "injected outage of {shard}: ServiceUnavailable"
                )))
            }
            _ => None,
        }
    }

    /// How many faults have been injected so far, by kind.
    pub fn injected(&self) -> Injected {
        *self.injected.lock().expect("not poisoned")
    }

    /// Whether this call of `shard` fails, and how.
    fn roll(&self, shard: &str) -> Option<ApiError> {
        let (fail, kind) = {
            let mut rngs = self.rngs.lock().expect("not poisoned");
            let rng = rngs.entry(shard.to_string()).or_insert_with(|| {
                // The shard's own stream of the seed (FNV-1a of its id: stable across runs).
                let h = shard.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                ChaCha8Rng::seed_from_u64(self.seed ^ h)
            });
            (rng.random_bool(self.rate), rng.random_range(0..3))
        };
        if !fail {
            return None;
        }
        let mut n = self.injected.lock().expect("not poisoned");
        Some(match kind {
            0 => {
                n.throttled += 1;
                ApiError::Throttled("injected ProvisionedThroughputExceededException".into())
            }
            1 => {
                n.expired += 1;
                ApiError::ExpiredIterator("injected ExpiredIteratorException".into())
            }
            _ => {
                n.transient += 1;
                ApiError::Transient("injected connection reset".into())
            }
        })
    }
}

impl<A: StreamApi> StreamApi for Faulty<A> {
    async fn list_shards(&self) -> Result<Vec<Shard>, ApiError> {
        self.inner.list_shards().await
    }

    async fn shard_iterator(&self, shard: &str, start: &StartAt) -> Result<String, ApiError> {
        if let Some(e) = self.down(Some(shard)) {
            return Err(e);
        }
        let it = self.inner.shard_iterator(shard, start).await?;
        self.shard_of
            .lock()
            .expect("not poisoned")
            .insert(it.clone(), shard.to_string());
        Ok(it)
    }

    async fn get_records(&self, iterator: &str, limit: i32) -> Result<RecordBatch, ApiError> {
        let shard = self
            .shard_of
            .lock()
            .expect("not poisoned")
            .get(iterator)
            .cloned();
        if let Some(e) = self.down(shard.as_deref()) {
            return Err(e);
        }
        if let Some(e) = self.roll(shard.as_deref().unwrap_or_default()) {
            return Err(e);
        }
        // Small pages, so that a run makes many calls and meets many faults.
        let batch = self.inner.get_records(iterator, limit.min(50)).await?;
        let mut map = self.shard_of.lock().expect("not poisoned");
        let shard = map.remove(iterator);
        if let (Some(next), Some(shard)) = (&batch.next_iterator, shard) {
            map.insert(next.clone(), shard);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{record, FakeStream};
    use super::*;

    /// Each shard's sequence of outcomes (ok, or the kind of fault) over `calls` get_records
    /// calls, the shards' calls interleaved in `order`.
    async fn outcomes(order: &[&str], calls: usize) -> HashMap<String, Vec<String>> {
        let mut fake = FakeStream::default();
        for s in ["a", "b"] {
            fake.records
                .insert(s.into(), (0..1000).map(|i| record(i, 0)).collect());
        }
        let faulty = Faulty::new(fake, 0.4, 11);
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let mut iterators = HashMap::new();
        for _ in 0..calls {
            for &s in order {
                let it = match iterators.get(s) {
                    Some(it) => String::clone(it),
                    None => {
                        let it = faulty
                            .shard_iterator(s, &StartAt::TrimHorizon)
                            .await
                            .unwrap();
                        iterators.insert(s, it.clone());
                        it
                    }
                };
                let outcome = match faulty.get_records(&it, 2).await {
                    Ok(b) => {
                        iterators.insert(s, b.next_iterator.unwrap());
                        "ok".to_string()
                    }
                    Err(e) => {
                        // A failed call's iterator is used again (an expired one would be
                        // replaced by the reader; here the fake's iterators never expire).
                        e.to_string()
                    }
                };
                out.entry(s.into()).or_default().push(outcome);
            }
        }
        out
    }

    /// The same seed gives every shard the same faults however the shards' calls interleave (a
    /// generator shared by concurrent readers gave different faults from one run to the next).
    #[tokio::test]
    async fn a_seed_gives_each_shard_the_same_faults_in_any_interleaving() {
        let ab = outcomes(&["a", "b"], 40).await;
        let ba = outcomes(&["b", "a"], 40).await;
        assert_eq!(ab, ba);
        assert!(ab["a"].iter().any(|o| o != "ok"), "{ab:?}");
        assert_ne!(ab["a"], ab["b"], "the shards' faults differ");
    }
}
