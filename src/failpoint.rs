//! Crash points for the crash harness: `DDB_LAKE_FAILPOINT=<point>:<n>` makes the process abort
//! (no destructors, no flushing: as abrupt as SIGKILL) the `n`-th time it reaches `<point>`.
//! Points: `after-intent` (a flush group's intent checkpoint saved, no object written),
//! `after-data` (a data file written, its commit checkpoint not), `after-errors` (an error file
//! written), `after-schema` (a table's remembered schema written, the data that needs it not),
//! `after-manifest` (a COPY manifest written), `mid-marker` (an hour's manifest written, its
//! `_COMPLETE.json` not), `mid-multipart` (every part of a multipart upload sent, the upload not
//! completed). Unset, each check is one atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Armed {
    point: String,
    at: u64,
    hits: AtomicU64,
}

fn armed_point() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("DDB_LAKE_FAILPOINT").ok()?;
            let (point, at) = v.split_once(':').unwrap_or((&v, "1"));
            Some(Armed {
                point: point.to_string(),
                at: at.parse().unwrap_or(1),
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Whether `point` is the armed crash point.
pub fn armed(point: &str) -> bool {
    armed_point().is_some_and(|a| a.point == point)
}

/// Aborts the process if `point` is armed and reached for the configured time.
pub fn hit(point: &str) {
    if let Some(a) = armed_point() {
        if a.point == point && a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.at {
            eprintln!("ddb-lake: failpoint {point} reached: aborting");
            std::process::abort();
        }
    }
}
