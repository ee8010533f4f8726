//! The parse-only floor: how fast the input can merely be read and parsed as JSON, with no
//! flattening, no Arrow and no Parquet. `benches/side_by_side.sh` runs it on the same file as the
//! tools it compares and reports it beside them.
//!
//! `cargo bench --bench floor -- FILE [THREADS] [PARSER]` reads FILE's lines once and parses
//! each, on THREADS threads (default: the machine's), each taking whole lines from a shared
//! reader. PARSER `serde` (the default) parses into `serde::de::IgnoredAny` (serde_json validates
//! the whole text and builds nothing); `tape` runs ddb-lake's fast decoder (`Tape::parse`: the
//! text checked, its nodes on a reused tape, the record's fields and attribute values checked),
//! the floor of the parser the pipeline uses. Prints one JSON line: records, bytes, seconds.

use std::io::BufRead;
use std::sync::Mutex;
use std::time::Instant;

/// Lines handed to a thread at a time.
const BATCH: usize = 512;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench --bench floor -- FILE [THREADS] [serde|tape]");
        std::process::exit(2);
    };
    let threads = args
        .get(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let tape = match args.get(2).map(String::as_str) {
        None | Some("serde") => false,
        Some("tape") => true,
        Some(other) => {
            eprintln!("unknown parser `{other}`: serde or tape");
            std::process::exit(2);
        }
    };
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    let reader = Mutex::new(std::io::BufReader::with_capacity(1 << 20, file));
    let started = Instant::now();
    let totals: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let (mut records, mut bytes) = (0u64, 0u64);
                    let mut lines: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::new()).collect();
                    let mut parsed = ddb_lake::decode::Tape::default();
                    loop {
                        let mut n = 0;
                        {
                            let mut r = reader.lock().expect("reader");
                            while n < BATCH {
                                lines[n].clear();
                                match r.read_until(b'\n', &mut lines[n]) {
                                    Ok(0) => break,
                                    Ok(_) => n += 1,
                                    Err(e) => panic!("reading: {e}"),
                                }
                            }
                        }
                        if n == 0 {
                            return (records, bytes);
                        }
                        for line in &lines[..n] {
                            bytes += line.len() as u64;
                            if line.iter().all(u8::is_ascii_whitespace) {
                                continue;
                            }
                            if tape {
                                parsed.clear();
                                parsed
                                    .parse(line.trim_ascii_end())
                                    .expect("a change record");
                            } else {
                                serde_json::from_slice::<serde::de::IgnoredAny>(line)
                                    .expect("valid JSON line");
                            }
                            records += 1;
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("parser"))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let (records, bytes) = totals
        .iter()
        .fold((0, 0), |(r, b), (r2, b2)| (r + r2, b + b2));
    println!(
        "{}",
        serde_json::json!({"records": records, "bytes": bytes, "seconds": secs, "threads": threads,
            "parser": if tape { "tape" } else { "serde" }})
    );
}
