//! The arguments of the commands that read a lake without writing change rows to it: `ddl` and
//! `snapshot`.

use clap::{Args, Subcommand};

use super::{parse_layout, set_location, CommonArgs};
use crate::config::{ConfigError, Settings};
use crate::partition::Layout;

/// The subcommands of `ddb-lake ddl`: one per query engine.
#[derive(Debug, Subcommand)]
pub enum DdlCommand {
    /// CREATE EXTERNAL TABLE statements with partition projection over the layout.
    Athena(DdlArgs),
    /// CREATE TABLE statements for Redshift (same columns, same order, for COPY ... PARQUET).
    Redshift(DdlArgs),
}

/// A lake that is read, not written: where it is and how its folders are laid out.
#[derive(Debug, Args)]
pub struct LakeArgs {
    /// The lake (where the remembered schemas are).
    #[arg(env = "DDB_LAKE_OUTPUT", long, short)]
    pub output: Option<String>,
    /// Partition layout of the lake (output.layout).
    #[arg(env = "DDB_LAKE_LAYOUT", long, value_parser = parse_layout)]
    pub layout: Option<Layout>,
    /// Partition template of the lake (output.template), instead of a layout.
    #[arg(env = "DDB_LAKE_TEMPLATE", long, conflicts_with = "layout")]
    pub template: Option<String>,
}

/// Options of `ddl athena` and `ddl redshift`.
#[derive(Debug, Args)]
pub struct DdlArgs {
    /// The config file and the schema options the table definitions follow.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The lake and its partition layout.
    #[command(flatten)]
    pub lake: LakeArgs,
    /// The lake's S3 location as Athena sees it, when --output is a local copy.
    #[arg(env = "DDB_LAKE_LOCATION", long)]
    pub location: Option<String>,
    /// Athena database or Redshift schema.
    #[arg(env = "DDB_LAKE_DATABASE", long, default_value = "ddb_lake")]
    pub database: String,
    /// Redshift: the IAM role for COPY and Spectrum statements.
    #[arg(
        env = "DDB_LAKE_IAM_ROLE",
        long,
        default_value = "arn:aws:iam::ACCOUNT:role/ROLE"
    )]
    pub iam_role: String,
    /// Redshift: also print the external schema for Spectrum over this Glue database.
    #[arg(env = "DDB_LAKE_SPECTRUM_DATABASE", long)]
    pub spectrum_database: Option<String>,
    /// Athena: print only what the Glue catalog lacks (CREATE for new tables, ALTER TABLE ... ADD
    /// COLUMNS after a schema change, ADD PARTITION for layouts without projection).
    #[arg(env = "DDB_LAKE_CHANGES", long)]
    pub changes: bool,
    /// Athena: the first hour partition projection covers, when earlier than the lake's earliest
    /// hour (which it covers anyway), e.g. 2019-06-01 or 2019-06-01T08 (UTC).
    #[arg(env = "DDB_LAKE_PROJECTION_START", long)]
    pub projection_start: Option<String>,
    /// Athena: make those changes in the catalog instead of printing them.
    #[arg(env = "DDB_LAKE_APPLY", long, value_enum)]
    pub apply: Option<Catalog>,
    /// The `{table}_latest` view: how far before a full export's time changes may or may not be
    /// in it (as for `snapshot`).
    #[arg(env = "DDB_LAKE_HANDOVER_MARGIN", long, default_value = "15m")]
    pub handover_margin: String,
}

/// Where `ddl athena --apply` registers tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Catalog {
    /// The AWS Glue Data Catalog (Athena's, and Redshift Spectrum's).
    Glue,
}

impl DdlArgs {
    /// The config file with `--output`, `--layout` and `--template` applied over it, validated.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut c = self.common.config()?;
        let l = &self.lake;
        set_location(&mut c, &l.output, l.layout, &l.template);
        c.validate()
    }
}

/// Options of `snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The config file and the schema options (`--key` for a table whose key the lake does not
    /// know yet).
    #[command(flatten)]
    pub common: CommonArgs,
    /// The lake and its partition layout.
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Only this table (its lake or DynamoDB name); all tables when absent.
    #[arg(env = "DDB_LAKE_TABLE", long)]
    pub table: Option<String>,
    /// The hour the snapshot is exact as of the end of (2026-11-01T10, UTC); default: the
    /// latest hour marked complete, else the hour before the current one.
    #[arg(env = "DDB_LAKE_AS_OF", long)]
    pub as_of: Option<String>,
    /// How far before a full export's time changes may or may not be in it (bootstrap's
    /// --handover-margin): a change within it wins over the exported item.
    #[arg(env = "DDB_LAKE_HANDOVER_MARGIN", long, default_value = "15m")]
    pub handover_margin: String,
    /// Memory for the buckets merged at once, e.g. 64MiB (buffer.memory_budget): a table
    /// larger than this is merged in more, smaller buckets.
    #[arg(env = "DDB_LAKE_MEMORY_BUDGET", long)]
    pub memory_budget: Option<String>,
    /// Print JSON.
    #[arg(env = "DDB_LAKE_JSON", long)]
    pub json: bool,
}

impl SnapshotArgs {
    /// The config file with `--output`, `--layout`, `--template` and `--memory-budget` applied
    /// over it, validated.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut c = self.common.config()?;
        let l = &self.lake;
        set_location(&mut c, &l.output, l.layout, &l.template);
        if let Some(v) = &self.memory_budget {
            c.buffer.memory_budget = v.clone();
        }
        c.validate()
    }
}
