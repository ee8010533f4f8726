//! `generate`: sample change records, for trying the tool and for tests and benchmarks.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use ddb_lake::cli::GenerateArgs;
use ddb_lake::generate::{generate as write_records, GenerateOptions};

use super::parse_time;

pub(super) fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let start_ms = parse_time("--start", &args.start)?;
    let opts = GenerateOptions {
        records: args.records,
        seed: args.seed,
        shape: args.shape,
        table: args.table,
        start_ms,
        hours: args.hours,
    };
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w: Box<dyn Write> = if path.extension().is_some_and(|e| e == "gz") {
                Box::new(flate2::write::GzEncoder::new(
                    std::io::BufWriter::new(file),
                    flate2::Compression::default(),
                ))
            } else {
                Box::new(std::io::BufWriter::new(file))
            };
            write_records(&opts, &mut w)?;
            drop(w);
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            write_records(&opts, &mut w)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
