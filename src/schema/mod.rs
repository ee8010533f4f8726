//! Schema stage: one ordered column list per lake table.
//!
//! A table's columns are metadata columns (`cdc_*`), attribute columns found at a path in the new
//! (or old) image, and companion columns that keep values that did not fit their column's type.
//! Evolution is append-only: columns are only ever added at the end, a column's type never
//! changes, and every file carries the full list (FORMATS.md 2). The list is remembered between
//! runs as a schema file next to the output (see [`crate::pipeline`]).

mod file;
pub mod naming;
pub mod types;

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

pub use file::{ColumnSpec, SchemaError, SchemaFile};
pub use types::{ColumnType, TimeFormat};

/// Which image of a change record an attribute column reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Image {
    /// NewImage (OldImage for REMOVE), with the keys always present.
    #[default]
    New,
    /// OldImage, in `old_` columns when `keep_old_image` is on.
    Old,
}

macro_rules! meta_columns {
    ($($variant:ident = $name:literal, $ty:expr, $doc:literal;)*) => {
        /// Metadata columns present in every table. Their names start with `cdc_`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Meta { $(#[doc = $doc] $variant,)* }

        impl Meta {
            /// Every metadata column, in the order a new table holds them (before attributes).
            pub const ALL: &'static [Meta] = &[$(Meta::$variant,)*];
            /// The column's usual name (`cdc_...`); a schema file may give it another.
            pub fn column_name(self) -> &'static str {
                match self { $(Meta::$variant => $name,)* }
            }
            /// The column's type; a schema file declaring the column must give this type.
            pub fn column_type(self) -> ColumnType {
                match self { $(Meta::$variant => $ty,)* }
            }
            /// What the column holds: its comment in the table definitions.
            pub fn doc(self) -> &'static str {
                match self { $(Meta::$variant => $doc,)* }
            }
        }
    };
}

meta_columns! {
    Operation = "cdc_operation", ColumnType::String, "INSERT, MODIFY or REMOVE; SNAPSHOT for an item of a full table export.";
    EventId = "cdc_event_id", ColumnType::String, "The change record's eventID; the export id for rows of a table export.";
    EventTime = "cdc_event_time", ColumnType::Timestamp(TimeFormat::Auto), "Event time (ApproximateCreationDateTime), UTC.";
    EventTimeUs = "cdc_event_time_us", ColumnType::Bigint, "Event time in exact microseconds since the epoch.";
    SourceTable = "cdc_source_table", ColumnType::String, "The DynamoDB table name.";
    TtlDelete = "cdc_ttl_delete", ColumnType::Boolean, "True for deletes made by DynamoDB TTL.";
    ShardId = "cdc_shard_id", ColumnType::String, "Kinesis shard id, when read from a stream.";
    SequenceNumber = "cdc_sequence_number", ColumnType::String, "Kinesis or DynamoDB Streams sequence number, as text.";
    SourceFile = "cdc_source_file", ColumnType::String, "Input file, when read from a file.";
    SourceLine = "cdc_source_line", ColumnType::Bigint, "1-based line of the record in its input file.";
    SourceOffset = "cdc_source_offset", ColumnType::Bigint, "Byte offset of the record in its (decompressed) input file.";
    Date = "cdc_date", ColumnType::Date(TimeFormat::Auto), "The partition's date (UTC), as data for Redshift COPY.";
    Hour = "cdc_hour", ColumnType::Int, "The partition's hour (UTC, 0-23), as data for Redshift COPY.";
    Unmapped = "cdc_unmapped", ColumnType::Json, "Attributes that have no column (column budget, or not declared), as JSON.";
    ArrivalTime = "cdc_arrival_time", ColumnType::Timestamp(TimeFormat::Auto), "Kinesis ApproximateArrivalTimestamp, when read from a stream.";
    SubsequenceNumber = "cdc_subsequence_number", ColumnType::Bigint, "Index of the record inside a KPL-aggregated Kinesis record.";
    Truncated = "cdc_truncated", ColumnType::String, "Columns whose text was cut at the string limit (comma-separated).";
}

/// Where a column's values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A metadata column: a field of the change record or of the place it was read from.
    Meta(Meta),
    /// An attribute of one of the record's images.
    Attr {
        /// The image the attribute is read from.
        image: Image,
        /// The attribute's name, then the nested map keys leading to the value.
        path: Vec<String>,
    },
    /// Text of values that did not fit the type of the column with this index.
    Companion(usize),
}

/// One column of a lake table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name in the Parquet files and the catalogs, unique within the table.
    pub name: String,
    /// The column's type; a column's type never changes once it exists.
    pub ty: ColumnType,
    /// Where the column's values come from.
    pub source: Source,
}

#[derive(Debug, Clone, Default)]
struct Node {
    column: Option<usize>,
    /// Fx hashing: looked up for every attribute of every record (SipHash showed in profiles).
    children: FxHashMap<String, usize>,
}

/// Node ids of the two image roots in the path tree.
const NEW_ROOT: usize = 0;
const OLD_ROOT: usize = 1;

/// The evolving schema of one lake table.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// DynamoDB table name.
    pub table: String,
    /// Lake table name.
    pub name: String,
    columns: Vec<Column>,
    names: HashMap<String, usize>,
    /// Path tree over attribute names: lookups during flattening allocate nothing.
    nodes: Vec<Node>,
    companions: Vec<Option<usize>>,
    meta: FxHashMap<Meta, usize>,
    arrow: Option<SchemaRef>,
    /// The DynamoDB table's key attributes (partition key, then sort key), once known: learned
    /// from a record's `Keys`, or declared.
    keys: Option<Vec<String>>,
    /// Incremented by every change worth remembering (a column, the keys).
    generation: u64,
}

impl TableSchema {
    /// A new table holding only the metadata columns.
    pub fn new(table: &str, name: Option<&str>) -> Self {
        let mut s = TableSchema::empty(table, name);
        s.add_missing_meta();
        s
    }

    /// No column yet, not even the metadata columns.
    fn empty(table: &str, name: Option<&str>) -> Self {
        TableSchema {
            table: table.to_string(),
            name: name.map_or_else(|| lake_table_name(table), str::to_string),
            columns: Vec::new(),
            names: HashMap::new(),
            nodes: vec![Node::default(), Node::default()],
            companions: Vec::new(),
            meta: FxHashMap::default(),
            arrow: None,
            keys: None,
            generation: 0,
        }
    }

    fn add_missing_meta(&mut self) {
        for &m in Meta::ALL {
            if !self.meta.contains_key(&m) {
                let name = unique(m.column_name().to_string(), &self.names);
                self.push(Column {
                    name,
                    ty: m.column_type(),
                    source: Source::Meta(m),
                });
            }
        }
    }

    fn push(&mut self, col: Column) -> usize {
        let idx = self.columns.len();
        match &col.source {
            Source::Meta(m) => {
                self.meta.insert(*m, idx);
            }
            Source::Attr { image, path } => {
                let node = self.node_for(*image, path);
                self.nodes[node].column = Some(idx);
            }
            Source::Companion(of) => self.companions[*of] = Some(idx),
        }
        self.names.insert(col.name.clone(), idx);
        self.columns.push(col);
        self.companions.push(None);
        self.arrow = None;
        self.generation += 1;
        idx
    }

    /// The DynamoDB table's key attribute names, once known.
    pub fn keys(&self) -> Option<&[String]> {
        self.keys.as_deref()
    }

    /// Remembers the table's key attribute names if none are known yet; returns whether they
    /// were learned now. A table's key never changes: names given later are ignored.
    pub fn learn_keys<S: AsRef<str>>(&mut self, names: &[S]) -> bool {
        if self.keys.is_some() || names.is_empty() {
            return false;
        }
        self.keys = Some(names.iter().map(|n| n.as_ref().to_string()).collect());
        self.generation += 1;
        true
    }

    /// A number that changes whenever the schema gains something its file would record.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn node_for(&mut self, image: Image, path: &[String]) -> usize {
        let mut node = image_root(image);
        for part in path {
            node = match self.nodes[node].children.get(part.as_str()) {
                Some(&n) => n,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[node].children.insert(part.clone(), n);
                    n
                }
            };
        }
        node
    }

    /// All columns, in the order of the Parquet files' fields; new columns are only appended.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Number of columns, metadata columns included.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether there is no column (false for every table built here: it has the metadata columns).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The index of the column named `name`, or `None` if the table has none by that name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }

    /// The index of a metadata column (every table holds each one).
    pub fn meta_index(&self, m: Meta) -> usize {
        self.meta[&m]
    }

    /// Root node of an image's attribute tree.
    pub fn root(&self, image: Image) -> usize {
        image_root(image)
    }

    /// The child node for an attribute name under `node`.
    pub fn child(&self, node: usize, name: &str) -> Option<usize> {
        self.nodes[node].children.get(name).copied()
    }

    /// True if paths continue below `node`.
    pub fn has_children(&self, node: usize) -> bool {
        !self.nodes[node].children.is_empty()
    }

    /// The column that reads the path ending at `node`.
    pub fn node_column(&self, node: usize) -> Option<usize> {
        self.nodes[node].column
    }

    /// Adds an attribute column for a path, named from the path and made unique. Returns `None`
    /// when the table already has `max_columns` columns.
    pub fn add_attr_column(
        &mut self,
        image: Image,
        path: &[&str],
        ty: ColumnType,
        max_columns: usize,
    ) -> Option<usize> {
        if self.columns.len() >= max_columns {
            return None;
        }
        let prefix = (image == Image::Old).then_some("old");
        let name = unique(naming::column_name(prefix, path), &self.names);
        Some(self.push(Column {
            name,
            ty,
            source: Source::Attr {
                image,
                path: path.iter().map(|s| s.to_string()).collect(),
            },
        }))
    }

    /// The companion (`NAME_str`) column of `col`, added if needed and the budget allows.
    pub fn companion(&mut self, col: usize, max_columns: usize) -> Option<usize> {
        if let Some(c) = self.companions[col] {
            return Some(c);
        }
        if self.columns.len() >= max_columns {
            return None;
        }
        let base = format!("{}_str", self.columns[col].name);
        let name = unique(naming::valid_name(&base), &self.names);
        Some(self.push(Column {
            name,
            ty: ColumnType::String,
            source: Source::Companion(col),
        }))
    }

    /// The Arrow schema of all columns, with the column list in the schema's metadata.
    pub fn arrow_schema(&mut self) -> SchemaRef {
        if let Some(s) = &self.arrow {
            return s.clone();
        }
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.arrow(), true))
            .collect();
        let specs: Vec<ColumnSpec> = self.columns.iter().map(|c| self.spec(c)).collect();
        let metadata = HashMap::from([
            ("ddb_lake.table".to_string(), self.table.clone()),
            (
                "ddb_lake.columns".to_string(),
                serde_json::to_string(&specs).expect("specs serialize"),
            ),
        ]);
        let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
        self.arrow = Some(schema.clone());
        schema
    }
}

fn image_root(image: Image) -> usize {
    match image {
        Image::New => NEW_ROOT,
        Image::Old => OLD_ROOT,
    }
}

fn unique(base: String, names: &HashMap<String, usize>) -> String {
    naming::unique_name(base, |c| names.contains_key(c))
}

/// The lake table name for a DynamoDB table name (a valid folder and Athena table name).
pub fn lake_table_name(table: &str) -> String {
    naming::column_name(None, &[table])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_table_has_meta_columns_first() {
        let s = TableSchema::new("InvoiceTransactions", None);
        assert_eq!(s.name, "invoice_transactions");
        assert_eq!(s.len(), Meta::ALL.len());
        assert_eq!(s.columns()[0].name, "cdc_operation");
    }

    #[test]
    fn attribute_named_like_meta_or_colliding_gets_suffix() {
        let mut s = TableSchema::new("t", None);
        let a = s
            .add_attr_column(Image::New, &["cdc_operation"], ColumnType::String, 100)
            .unwrap();
        assert_eq!(s.columns()[a].name, "cdc_operation_2");
        let b = s
            .add_attr_column(Image::New, &["Amount"], ColumnType::Bigint, 100)
            .unwrap();
        let c = s
            .add_attr_column(Image::New, &["amount"], ColumnType::String, 100)
            .unwrap();
        assert_eq!(
            (s.columns()[b].name.as_str(), s.columns()[c].name.as_str()),
            ("amount", "amount_2")
        );
        let comp = s.companion(b, 100).unwrap();
        assert_eq!(s.columns()[comp].name, "amount_str");
        assert_eq!(s.companion(b, 100), Some(comp));
        // Path lookups.
        let node = s.child(s.root(Image::New), "Amount").unwrap();
        assert_eq!(s.node_column(node), Some(b));
        assert!(s.child(s.root(Image::Old), "Amount").is_none());
    }

    #[test]
    fn budget_limits_columns() {
        let mut s = TableSchema::new("t", None);
        let max = s.len() + 1;
        assert!(s
            .add_attr_column(Image::New, &["a"], ColumnType::String, max)
            .is_some());
        assert!(s
            .add_attr_column(Image::New, &["b"], ColumnType::String, max)
            .is_none());
    }
}
