//! Criterion micro-benchmarks of the pipeline's stages, each over the same generated records
//! (`ddb-lake generate`'s Kinesis shape) and reported per input byte:
//!
//! - `decode`: bytes to change records with the reference decoder (`parse_record`, a tree);
//! - `decode_tape`: the same with the fast decoder (`Tape::parse`, what the pipeline runs);
//! - `flatten`, `flatten_tape`: records of either decoder to rows (column lookup, conversion);
//! - `to_arrow`: decode (fast), flatten and append into Arrow builders (the reading side's whole
//!   work); `to_arrow_reference` the same with the reference decoder;
//! - `encode`: record batches to zstd Parquet bytes;
//! - `whole`: `export` of the records from a file into a local folder, as the command does it.
//!
//! Run: `cargo bench --bench stages` (numbers in docs/BENCHMARKS.md).

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ddb_lake::buffer::Chunk;
use ddb_lake::config::{ConfigFile, Settings};
use ddb_lake::decode::{parse_record, Tape};
use ddb_lake::flatten::{flatten, Position};
use ddb_lake::generate::{generate, GenerateOptions, Shape};
use ddb_lake::pipeline::{export, RunOptions, SystemClock};
use ddb_lake::schema::TableSchema;
use ddb_lake::summary::Counters;

const RECORDS: u64 = 20_000;

fn input() -> Vec<u8> {
    let mut out = Vec::new();
    let opts = GenerateOptions {
        records: RECORDS,
        seed: 7,
        shape: Shape::Kinesis,
        table: "orders".into(),
        start_ms: 1_793_520_000_000,
        hours: 1,
    };
    generate(&opts, &mut out).expect("generates");
    out
}

fn settings() -> Settings {
    let mut config = ConfigFile::default();
    config.output.url = Some("lake".into());
    config.validate().expect("default config")
}

fn lines(input: &[u8]) -> Vec<&[u8]> {
    input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

fn stages(c: &mut Criterion) {
    let input = input();
    let lines = lines(&input);
    let settings = settings();
    let pos = Position::default();
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(10);

    g.bench_function("decode", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(parse_record(l).expect("valid"));
            }
        })
    });

    let mut tape = Tape::default();
    g.bench_function("decode_tape", |b| {
        b.iter(|| {
            tape.clear();
            for l in &lines {
                black_box(tape.parse(l).expect("valid"));
            }
        })
    });

    let records: Vec<_> = lines
        .iter()
        .map(|l| parse_record(l).expect("valid"))
        .collect();
    let mut schema = TableSchema::new("orders", None);
    g.bench_function("flatten", |b| {
        b.iter(|| {
            for r in &records {
                let r = r.view();
                black_box(flatten(
                    &mut schema,
                    &r,
                    &pos,
                    r.event_time_us,
                    settings.flatten,
                ));
            }
        })
    });

    tape.clear();
    let heads: Vec<_> = lines
        .iter()
        .map(|l| tape.parse(l).expect("valid"))
        .collect();
    let mut schema = TableSchema::new("orders", None);
    g.bench_function("flatten_tape", |b| {
        b.iter(|| {
            for (l, h) in lines.iter().zip(&heads) {
                let r = tape.view(std::str::from_utf8(l).expect("text"), h);
                black_box(flatten(
                    &mut schema,
                    &r,
                    &pos,
                    r.event_time_us,
                    settings.flatten,
                ));
            }
        })
    });

    g.bench_function("to_arrow", |b| {
        b.iter(|| {
            let mut schema = TableSchema::new("orders", None);
            let mut chunk = Chunk::new();
            let mut batches = Vec::new();
            let mut tape = Tape::default();
            for l in &lines {
                tape.clear();
                let l = std::str::from_utf8(l).expect("text");
                let h = tape.parse_str(l).expect("valid");
                let r = tape.view(l, &h);
                let row = flatten(&mut schema, &r, &pos, r.event_time_us, settings.flatten);
                chunk.push(&schema, &row);
                if chunk.rows() == ddb_lake::buffer::CHUNK_ROWS {
                    batches.push(chunk.finish());
                }
            }
            batches.push(chunk.finish());
            black_box(batches)
        })
    });

    g.bench_function("to_arrow_reference", |b| {
        b.iter(|| {
            let mut schema = TableSchema::new("orders", None);
            let mut chunk = Chunk::new();
            let mut batches = Vec::new();
            for l in &lines {
                let r = parse_record(l).expect("valid");
                let r = r.view();
                let row = flatten(&mut schema, &r, &pos, r.event_time_us, settings.flatten);
                chunk.push(&schema, &row);
                if chunk.rows() == ddb_lake::buffer::CHUNK_ROWS {
                    batches.push(chunk.finish());
                }
            }
            batches.push(chunk.finish());
            black_box(batches)
        })
    });

    let mut schema = TableSchema::new("orders", None);
    let mut chunk = Chunk::new();
    let mut batches = Vec::new();
    for r in &records {
        let r = r.view();
        let row = flatten(&mut schema, &r, &pos, r.event_time_us, settings.flatten);
        chunk.push(&schema, &row);
        if chunk.rows() == ddb_lake::buffer::CHUNK_ROWS {
            batches.push(chunk.finish());
        }
    }
    batches.push(chunk.finish());
    // Batches finished before later columns appeared are padded by the encoder.
    let arrow_schema = schema.arrow_schema();
    g.bench_function("encode", |b| {
        b.iter(|| {
            black_box(
                ddb_lake::encode::encode(&arrow_schema, batches.clone(), &settings.encode)
                    .expect("encodes"),
            )
        })
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("in.jsonl");
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(&input))
        .expect("writes input");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut run = 0;
    g.bench_function("whole", |b| {
        b.iter(|| {
            run += 1;
            let mut s = settings.clone();
            s.output = dir.path().join(format!("lake-{run}")).display().to_string();
            let summary = rt
                .block_on(export(
                    &s,
                    &[file.display().to_string()],
                    &RunOptions::default(),
                    Arc::new(SystemClock::default()),
                    Arc::new(Counters::default()),
                ))
                .expect("exports");
            assert_eq!(summary.rows_total(), RECORDS);
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
