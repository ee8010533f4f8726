//! ddb-lake turns DynamoDB change records into an hour-partitioned Parquet lake that Athena and
//! Redshift read on the first try.
//!
//! ```text
//! source ─► decode ─► flatten (schema) ─► partition ─► buffer ─► encode ─► store
//!   files     JSON       typed cells        folders     per        Parquet   local / S3
//!             records    + evolution                    partition
//!                 └─► reject: bad records, with reason, position and original bytes
//! ```
//!
//! One module per stage; [`pipeline`] only wires them. CPU stages are synchronous and pure;
//! async lives at the edges ([`source`] for S3 inputs, [`store`]). `docs/DESIGN.md` holds the
//! invariants.

#![warn(unreachable_pub, missing_docs)]

pub mod aws;
pub mod buffer;
pub mod catalog;
pub mod checkpoint;
pub mod cli;
pub mod compact;
pub mod config;
pub mod ddl;
pub mod decode;
pub mod dynamodb_streams;
pub mod encode;
pub mod errors;
pub mod failpoint;
pub mod filter;
pub mod flatten;
pub mod generate;
pub mod item;
pub mod kinesis;
pub mod manifest;
pub mod metrics;
pub mod partition;
pub mod pipeline;
pub mod reject;
pub mod report;
pub mod schema;
pub mod seq;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod summary;
#[cfg(test)]
mod test_support;
