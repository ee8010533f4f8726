//! Unit tests of the DynamoDB Streams source: paging, iterators, starts at a time, empty pages.

use super::*;
use bytes::Bytes;

const ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2019-12-16T17:21:37.013";

#[test]
fn arns_and_tables() {
    assert!(is_stream_arn(ARN));
    assert!(!is_stream_arn("Orders"));
    assert!(!is_stream_arn("arn:aws:kinesis:us-east-1:1:stream/x"));
    assert_eq!(table_of(ARN), Some("Orders"));
}

fn shard(n: usize) -> Shard {
    Shard {
        id: format!("shardId-{n:05}"),
        parent: n.checked_sub(1).map(|p| format!("shardId-{p:05}")),
        adjacent_parent: None,
    }
}

/// 350 shards in pages of 100; the third page fails once. The retry goes on from the
/// fourth page's start instead of reading the first two again.
#[tokio::test]
async fn listing_pages_and_keeps_its_progress_after_an_error() {
    let all: Vec<Shard> = (0..350).map(shard).collect();
    let listing = Mutex::new(Listing::default());
    let calls = std::sync::Mutex::new(Vec::<Option<String>>::new());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let page = |after: Option<String>| {
        calls.lock().unwrap().push(after.clone());
        let start = match &after {
            None => 0,
            Some(id) => all.iter().position(|s| &s.id == id).unwrap() + 1,
        };
        let fail = start == 200 && !failed.swap(true, std::sync::atomic::Ordering::SeqCst);
        let end = (start + 100).min(all.len());
        let out = if fail {
            Err(ApiError::Transient("connection reset".into()))
        } else {
            Ok(Page {
                shards: all[start..end].to_vec(),
                last_evaluated: (end < all.len()).then(|| all[end - 1].id.clone()),
            })
        };
        async move { out }
    };
    let e = list_all(&listing, page).await.unwrap_err();
    assert!(matches!(e, ApiError::Transient(_)));
    let got = list_all(&listing, page).await.unwrap();
    assert_eq!(got, all);
    let calls = calls.lock().unwrap().clone();
    let starts: Vec<Option<&str>> = calls.iter().map(|c| c.as_deref()).collect();
    assert_eq!(
        starts,
        [
            None,
            Some("shardId-00099"),
            Some("shardId-00199"),
            Some("shardId-00199"),
            Some("shardId-00299"),
        ]
    );
    // The next listing starts over (new shards may have appeared anywhere).
    let again = list_all(&listing, page).await.unwrap();
    assert_eq!(again.len(), 350);
}

fn rec(seq: u64, arrival_ms: i64) -> KinesisRecord {
    KinesisRecord {
        sdk: None,
        sequence_number: seq.to_string(),
        data: Bytes::new(),
        arrival_ms,
    }
}

#[test]
fn a_start_at_a_time_skips_what_came_before_its_minute() {
    let mut rs = vec![
        rec(1, 59_000),
        rec(2, 60_000),
        rec(3, 119_999),
        rec(4, 59_500),
    ];
    // Creation times may be rounded down to the minute: one stamped with the start's
    // minute is kept, even when the start is later in that minute.
    assert!(skip_before(&mut rs, 90_500));
    let seqs: Vec<&str> = rs.iter().map(|r| r.sequence_number.as_str()).collect();
    assert_eq!(
        seqs,
        ["2", "3", "4"],
        "after the first kept record nothing is dropped"
    );
    let mut early = vec![rec(1, 1_000), rec(2, 2_000)];
    assert!(!skip_before(&mut early, 60_000));
    assert!(early.is_empty());
}

/// A page of records all from before a start at a time is not the tip: a scheduled run
/// that took it for one would stop before the records after the start.
#[test]
fn a_page_skipped_whole_is_not_the_tip() {
    let now = 10 * 60_000;
    let mut old = vec![rec(1, 1_000), rec(2, 2_000)];
    let (from, behind) = after_start(&mut old, Some(5 * 60_000), now);
    assert!(old.is_empty());
    assert_eq!(
        from,
        Some(5 * 60_000),
        "the start still applies to the next page"
    );
    assert_eq!(behind, Some(now - 2_000));
    let mut empty = Vec::new();
    assert_eq!(
        after_start(&mut empty, Some(5 * 60_000), now),
        (Some(5 * 60_000), None)
    );
    let mut mixed = vec![rec(3, 4 * 60_000), rec(4, 6 * 60_000)];
    let (from, behind) = after_start(&mut mixed, Some(5 * 60_000), now);
    assert_eq!((mixed.len(), from, behind), (1, None, Some(4 * 60_000)));
    let mut plain = vec![rec(5, 9 * 60_000)];
    assert_eq!(after_start(&mut plain, None, now), (None, Some(60_000)));
}

#[test]
fn iterators_carry_the_shard_and_the_start_time() {
    let text = Iter::format("shardId-1", Some(42), true, Some("77"), "arn:x|1|AAAA\nodd");
    let it = Iter::parse(&text).unwrap();
    assert_eq!(
        (it.shard, it.from_ms, it.fresh, it.last, it.inner),
        ("shardId-1", Some(42), true, Some("77"), "arn:x|1|AAAA\nodd")
    );
    let text = Iter::format("s", None, false, None, "i");
    let plain = Iter::parse(&text).unwrap();
    assert_eq!(
        (plain.from_ms, plain.fresh, plain.last),
        (None, false, None)
    );
    assert!(Iter::parse("no separators").is_err());
}

/// A fresh iterator in front of three empty pages (after trimmed records, say) still gets
/// to the records; a page of a reader already going is taken as it is.
#[tokio::test]
async fn empty_pages_after_a_fresh_iterator_are_followed() {
    let pages = std::sync::Mutex::new(vec![
        (vec![], Some("2".to_string())),
        (vec![], Some("3".to_string())),
        (vec![], Some("4".to_string())),
        (vec![rec(7, 1_000)], Some("5".to_string())),
    ]);
    let fetch = |_: String| {
        let page = pages.lock().unwrap().remove(0);
        async move { Ok(page) }
    };
    let (records, next) = page_after_empty("1".into(), EMPTY_PAGES_FOLLOWED, fetch)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(next.as_deref(), Some("5"));
    pages.lock().unwrap().push((vec![], Some("6".to_string())));
    pages.lock().unwrap().push((vec![rec(8, 2_000)], None));
    let (records, next) = page_after_empty("5".into(), 0, fetch).await.unwrap();
    assert!(
        records.is_empty(),
        "not fresh: the empty page is the answer"
    );
    assert_eq!(next.as_deref(), Some("6"));
}
