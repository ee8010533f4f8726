//! Flatten stage: one change record to one row of cells keyed by column index, evolving the
//! table's schema as new attributes appear.
//!
//! Nested maps become top-level columns (`invoice_doc_address_state`) down to `max_depth`
//! levels; deeper maps and lists are JSON text. A value that does not fit its column's type goes
//! to the column's companion (`amount_str`) and is counted. Anything that finds no column (the
//! column budget is spent, or inference is off and the schema does not declare it) goes to the
//! `cdc_unmapped` JSON column. Nothing is dropped.

pub mod convert;
mod strings;

use std::borrow::Cow;

use crate::decode::{AttrView, MapView, Operation, RecordView, Shape};
use crate::schema::{ColumnType, Image, Meta, TableSchema};
pub use convert::{Cell, ConvertOptions};
use strings::apply_string_limit;
pub use strings::{StringLimit, StringPolicy};

/// Flattening settings (validated config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlattenOptions {
    /// Map levels flattened into columns; 1 keeps every top-level map as JSON.
    pub max_depth: usize,
    /// Column budget per table, metadata columns included.
    pub max_columns: usize,
    /// Add columns for attributes the schema does not know.
    pub infer: bool,
    /// Also write the old image into `old_` columns.
    pub keep_old_image: bool,
    /// Scale of inferred decimal(38,s) columns.
    pub decimal_scale: u8,
    /// How values convert to their columns' types.
    pub convert: ConvertOptions,
    /// What to do with text longer than [`StringLimit::max_bytes`].
    pub strings: StringLimit,
}

impl Default for FlattenOptions {
    fn default() -> Self {
        FlattenOptions {
            max_depth: 3,
            max_columns: 1000,
            infer: true,
            keep_old_image: false,
            decimal_scale: 9,
            convert: ConvertOptions::default(),
            strings: StringLimit::default(),
        }
    }
}

/// Where a record came from: shard and sequence number, or file, line and offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position<'a> {
    /// Kinesis shard id, when read from a stream; `None` for files.
    pub shard: Option<&'a str>,
    /// Kinesis sequence number of the stream record, when read from a stream.
    pub sequence_number: Option<&'a str>,
    /// Input file (local path or object URL), when read from a file.
    pub file: Option<&'a str>,
    /// 1-based line where the record starts in its input file, when read from a file.
    pub line: Option<u64>,
    /// Byte offset of the record in its decompressed input file, when read from a file.
    pub offset: Option<u64>,
    /// Kinesis ApproximateArrivalTimestamp, milliseconds since the epoch.
    pub arrival_ms: Option<i64>,
    /// Index of the user record inside a KPL-aggregated Kinesis record.
    pub subsequence: Option<u64>,
}

/// A flattened record.
#[derive(Debug, Default)]
pub struct Row<'a> {
    /// Cells by column index; columns not listed are null.
    pub cells: Vec<(usize, Cell<'a>)>,
    /// Columns whose value did not fit their type (kept in the companion column).
    pub mismatched: Vec<usize>,
    /// Number of values that found no column and went to `cdc_unmapped`.
    pub unmapped: usize,
    /// Columns whose text was cut at the string limit.
    pub truncated: Vec<usize>,
    /// A column whose text is over the limit with the `reject` policy: the record goes to the
    /// error output instead of the lake.
    pub too_long: Option<usize>,
}

impl<'a> Row<'a> {
    /// The cell for column index `col`, or `None` when the row has none (the column is null).
    pub fn get(&self, col: usize) -> Option<&Cell<'a>> {
        self.cells.iter().find(|(c, _)| *c == col).map(|(_, v)| v)
    }
}

struct Flattener<'s, 'a, 'm: 'a, M: MapView<'m>> {
    schema: &'s mut TableSchema,
    opts: FlattenOptions,
    row: Row<'a>,
    path: Vec<&'a str>,
    /// (image, path, value) of values with no column.
    unmapped: Vec<(Image, Vec<&'a str>, M::Value)>,
    /// Columns the row has a cell for.
    filled: ColumnSet,
}

/// A set of column indexes, without an allocation for the first 256 columns.
#[derive(Default)]
struct ColumnSet {
    first: [u64; 4],
    more: Vec<u64>,
}

impl ColumnSet {
    /// Adds `col`; false when it was already in.
    fn insert(&mut self, col: usize) -> bool {
        let (word, bit) = (col / 64, 1u64 << (col % 64));
        let w = match self.first.get_mut(word) {
            Some(w) => w,
            None => {
                let i = word - self.first.len();
                if self.more.len() <= i {
                    self.more.resize(i + 1, 0);
                }
                &mut self.more[i]
            }
        };
        let fresh = *w & bit == 0;
        *w |= bit;
        fresh
    }
}

impl<'a, 'm: 'a, M: MapView<'m>> Flattener<'_, 'a, 'm, M> {
    fn item(&mut self, image: Image, item: M, skip: Option<M>) {
        let root = self.schema.root(image);
        for (name, value) in item.entries() {
            if skip.is_some_and(|s| s.get(name).is_some()) {
                continue;
            }
            self.attr(image, Some(root), name, value);
        }
    }

    fn attr(&mut self, image: Image, parent: Option<usize>, name: &'m str, value: M::Value) {
        self.path.push(name);
        let node = parent.and_then(|p| self.schema.child(p, name));
        let col = node.and_then(|n| self.schema.node_column(n));
        let col_ty = col.map(|c| &self.schema.columns()[c].ty);
        match value.shape() {
            // Maps are flattened down to max_depth, and deeper where the schema declares paths.
            Shape::M(map)
                if col_ty != Some(&ColumnType::Json)
                    && (self.path.len() < self.opts.max_depth
                        || node.is_some_and(|n| self.schema.has_children(n))) =>
            {
                for (k, v) in map.entries() {
                    self.attr(image, node, k, v);
                }
            }
            _ => self.leaf(image, col, value),
        }
        self.path.pop();
    }

    fn leaf(&mut self, image: Image, col: Option<usize>, value: M::Value) {
        let col = match col {
            Some(c) => Some(c),
            None if self.opts.infer => match convert::infer_type(value, self.opts.decimal_scale) {
                None => return, // NULL: the cell is null either way.
                Some(ty) => {
                    self.schema
                        .add_attr_column(image, &self.path, ty, self.opts.max_columns)
                }
            },
            None => None,
        };
        let Some(col) = col else {
            self.unmapped.push((image, self.path.clone(), value));
            return;
        };
        let ty = &self.schema.columns()[col].ty;
        // A name given twice in one map finds its column filled: the later value goes to
        // `cdc_unmapped` (a row holds one value per column).
        match convert::convert(value, ty, self.opts.convert) {
            Some(cell) if self.filled.insert(col) => self.row.cells.push((col, cell)),
            Some(_) => self.unmapped.push((image, self.path.clone(), value)),
            None => match self.schema.companion(col, self.opts.max_columns) {
                Some(comp) if self.filled.insert(comp) => {
                    self.row.mismatched.push(col);
                    let text = convert::to_text(value, self.opts.convert);
                    self.row.cells.push((comp, Cell::Str(text)));
                }
                _ => self.unmapped.push((image, self.path.clone(), value)),
            },
        }
    }

    /// Renders unmapped values as `{"NewImage":{...},"OldImage":{...}}` with nested paths.
    fn unmapped_json(&self) -> Option<String> {
        if self.unmapped.is_empty() {
            return None;
        }
        let mut out = String::from("{");
        for (i, image) in [Image::New, Image::Old].into_iter().enumerate() {
            let entries: Vec<_> = self
                .unmapped
                .iter()
                .filter(|(im, _, _)| *im == image)
                .map(|(_, p, v)| (p.as_slice(), *v))
                .collect();
            if entries.is_empty() {
                continue;
            }
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(["\"NewImage\":", "\"OldImage\":"][i]);
            write_tree(&entries, &mut out, self.opts.convert);
        }
        out.push('}');
        Some(out)
    }
}

/// Writes entries sharing a path prefix as one nested JSON object.
fn write_tree<'a, V: AttrView<'a>>(entries: &[(&[&str], V)], out: &mut String, o: ConvertOptions) {
    out.push('{');
    let mut i = 0;
    let mut first = true;
    while i < entries.len() {
        let key = entries[i].0[0];
        let group_end = i + entries[i..].iter().take_while(|(p, _)| p[0] == key).count();
        if !first {
            out.push(',');
        }
        first = false;
        convert::push_json_str(out, key);
        out.push(':');
        let group = &entries[i..group_end];
        if group.len() == 1 && group[0].0.len() == 1 {
            convert::write_json(group[0].1, out, o);
        } else {
            let sub: Vec<_> = group
                .iter()
                .filter(|(p, _)| p.len() > 1)
                .map(|(p, v)| (&p[1..], *v))
                .collect();
            write_tree(&sub, out, o);
        }
        i = group_end;
    }
    out.push('}');
}

/// Flattens one record into a row of `schema`, adding columns as needed.
/// `partition_time_us` is the time the partition is chosen by (event or processing time): the
/// date and hour columns hold it.
pub fn flatten<'a, 'm: 'a, M: MapView<'m>>(
    schema: &mut TableSchema,
    rec: &RecordView<'m, M>,
    pos: &Position<'a>,
    partition_time_us: i64,
    opts: FlattenOptions,
) -> Row<'a> {
    if schema.keys().is_none() && !rec.keys.is_empty() {
        // In name order: a record's `Keys` come in no fixed order.
        let mut names: Vec<&str> = rec.keys.entries().map(|(k, _)| k).collect();
        names.sort_unstable();
        schema.learn_keys(&names);
    }
    // Room for a cell per column: growing the vector row by row showed in the profile.
    let cells = Vec::with_capacity(schema.len() + 4);
    let mut f = Flattener::<'_, 'a, 'm, M> {
        schema,
        opts,
        row: Row {
            cells,
            ..Row::default()
        },
        path: Vec::with_capacity(8),
        unmapped: Vec::new(),
        filled: ColumnSet::default(),
    };
    let image = match rec.operation {
        Operation::Remove => rec.old_image,
        _ => rec.new_image,
    };
    if let Some(image) = image {
        f.item(Image::New, image, None);
    }
    // Keys are always present, even for KEYS_ONLY streams.
    f.item(Image::New, rec.keys, image);
    // The before-image in `old_` columns: on request, and always for a MODIFY that carries no
    // other (an OLD_IMAGE stream's), which would otherwise keep nothing but its keys.
    let only_image = rec.operation == Operation::Modify && rec.new_image.is_none();
    if opts.keep_old_image || only_image {
        if let Some(old) = rec.old_image {
            f.item(Image::Old, old, None);
        }
    }
    let unmapped = f.unmapped_json();
    let Flattener {
        schema, mut row, ..
    } = f;
    row.unmapped = unmapped.is_some() as usize;
    let m = |meta: Meta| schema.meta_index(meta);
    let opt_str = |s: Option<&'a str>| s.map_or(Cell::Null, |s| Cell::Str(Cow::Borrowed(s)));
    let day = convert::days(partition_time_us).unwrap_or(0);
    let hour = partition_time_us.div_euclid(3_600_000_000).rem_euclid(24) as i32;
    let seq = opt_str(pos.sequence_number.or(rec.sequence_number));
    row.cells.extend([
        (
            m(Meta::Operation),
            Cell::Str(Cow::Borrowed(rec.operation.as_str())),
        ),
        (m(Meta::EventId), opt_str(rec.event_id)),
        (m(Meta::EventTime), Cell::Ts(rec.event_time_us)),
        (m(Meta::EventTimeUs), Cell::I64(rec.event_time_us)),
        (
            m(Meta::SourceTable),
            Cell::Str(Cow::Owned(schema.table.clone())),
        ),
        (m(Meta::TtlDelete), Cell::Bool(rec.ttl_delete)),
        (m(Meta::ShardId), opt_str(pos.shard)),
        (m(Meta::SequenceNumber), seq),
        (m(Meta::SourceFile), opt_str(pos.file)),
        (
            m(Meta::SourceLine),
            pos.line.map_or(Cell::Null, |l| Cell::I64(l as i64)),
        ),
        (
            m(Meta::SourceOffset),
            pos.offset.map_or(Cell::Null, |o| Cell::I64(o as i64)),
        ),
        (m(Meta::Date), Cell::Date(day)),
        (m(Meta::Hour), Cell::I32(hour)),
        (
            m(Meta::Unmapped),
            unmapped.map_or(Cell::Null, |u| Cell::Str(Cow::Owned(u))),
        ),
        (
            m(Meta::ArrivalTime),
            pos.arrival_ms.map_or(Cell::Null, |a| Cell::Ts(a * 1000)),
        ),
        (
            m(Meta::SubsequenceNumber),
            pos.subsequence.map_or(Cell::Null, |s| Cell::I64(s as i64)),
        ),
    ]);
    apply_string_limit(schema, &mut row, opts.strings);
    row
}

#[cfg(test)]
mod decoders_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::parse_record;

    fn rec(new_image: &str, op: &str, old_image: Option<&str>) -> String {
        format!(
            r#"{{"eventName":"{op}","eventID":"e1","tableName":"T","dynamodb":{{
              "ApproximateCreationDateTime":1795000000331,"Keys":{{"Id":{{"S":"k1"}}}},
              "NewImage":{new_image}{}}}}}"#,
            old_image.map_or(String::new(), |o| format!(r#","OldImage":{o}"#))
        )
    }

    fn col(schema: &TableSchema, row: &Row, name: &str) -> Option<Cell<'static>> {
        let idx = schema.column_index(name)?;
        row.get(idx).map(|c| match c {
            Cell::Str(s) => Cell::Str(Cow::Owned(s.to_string())),
            Cell::List(l) => Cell::List(
                l.iter()
                    .map(|c| match c {
                        Cell::Str(s) => Cell::Str(Cow::Owned(s.to_string())),
                        other => other.clone().into_static(),
                    })
                    .collect(),
            ),
            other => other.clone().into_static(),
        })
    }

    impl Cell<'_> {
        fn into_static(self) -> Cell<'static> {
            match self {
                Cell::Null => Cell::Null,
                Cell::I64(v) => Cell::I64(v),
                Cell::I32(v) => Cell::I32(v),
                Cell::F64(v) => Cell::F64(v),
                Cell::Dec(v) => Cell::Dec(v),
                Cell::Bool(v) => Cell::Bool(v),
                Cell::Ts(v) => Cell::Ts(v),
                Cell::Date(v) => Cell::Date(v),
                Cell::Bin(v) => Cell::Bin(v),
                Cell::Str(s) => Cell::Str(Cow::Owned(s.into_owned())),
                Cell::List(l) => Cell::List(l.into_iter().map(Cell::into_static).collect()),
            }
        }
    }

    #[test]
    fn flattens_nested_maps_to_depth_and_json_beyond() {
        let text = rec(
            r#"{"Id":{"S":"k1"},"Doc":{"M":{"address":{"M":{"state":{"S":"WA"},
                "geo":{"M":{"lat":{"N":"1.5"}}}}}}},"Tags":{"L":[{"S":"a"},{"N":"2"}]},
                "Nums":{"NS":["3","1"]}}"#,
            "INSERT",
            None,
        );
        let r = parse_record(text.as_bytes()).unwrap();
        let mut s = TableSchema::new("T", None);
        let row = flatten(
            &mut s,
            &r.view(),
            &Position::default(),
            r.event_time_us,
            FlattenOptions::default(),
        );
        assert_eq!(col(&s, &row, "id"), Some(Cell::Str("k1".into())));
        assert_eq!(
            col(&s, &row, "doc_address_state"),
            Some(Cell::Str("WA".into()))
        );
        assert_eq!(
            col(&s, &row, "doc_address_geo"),
            Some(Cell::Str(r#"{"lat":1.5}"#.into()))
        );
        assert_eq!(col(&s, &row, "tags"), Some(Cell::Str(r#"["a",2]"#.into())));
        assert_eq!(
            col(&s, &row, "nums"),
            Some(Cell::List(vec![
                Cell::Str("1".into()),
                Cell::Str("3".into())
            ]))
        );
        assert_eq!(
            col(&s, &row, "cdc_operation"),
            Some(Cell::Str("INSERT".into()))
        );
        assert_eq!(
            col(&s, &row, "cdc_hour"),
            Some(Cell::I32(((1_795_000_000_i64 / 3600) % 24) as i32))
        );
        assert_eq!(col(&s, &row, "cdc_unmapped"), Some(Cell::Null));
        // Every cell refers to a distinct column.
        let mut cols: Vec<_> = row.cells.iter().map(|(c, _)| *c).collect();
        cols.sort();
        cols.dedup();
        assert_eq!(cols.len(), row.cells.len());
    }

    #[test]
    fn mismatch_goes_to_companion_and_is_counted() {
        let mut s = TableSchema::new("T", None);
        let o = FlattenOptions::default();
        let r1 = rec(r#"{"Amount":{"N":"5"}}"#, "INSERT", None);
        let r1 = parse_record(r1.as_bytes()).unwrap();
        flatten(&mut s, &r1.view(), &Position::default(), 0, o);
        let r2 = rec(r#"{"Amount":{"N":"5.25"}}"#, "MODIFY", None);
        let r2 = parse_record(r2.as_bytes()).unwrap();
        let row = flatten(&mut s, &r2.view(), &Position::default(), 0, o);
        let amount = s.column_index("amount").unwrap();
        assert_eq!(row.mismatched, vec![amount]);
        assert_eq!(col(&s, &row, "amount"), None);
        assert_eq!(col(&s, &row, "amount_str"), Some(Cell::Str("5.25".into())));
    }

    #[test]
    fn remove_uses_old_image_and_old_columns_when_asked() {
        let mut s = TableSchema::new("T", None);
        let o = FlattenOptions {
            keep_old_image: true,
            ..FlattenOptions::default()
        };
        let text = r#"{"eventName":"REMOVE","tableName":"T","dynamodb":{
            "ApproximateCreationDateTime":1795000000331,"Keys":{"Id":{"S":"k1"}},
            "OldImage":{"Id":{"S":"k1"},"Name":{"S":"old name"}}}}"#;
        let r = parse_record(text.as_bytes()).unwrap();
        let row = flatten(&mut s, &r.view(), &Position::default(), 0, o);
        assert_eq!(col(&s, &row, "name"), Some(Cell::Str("old name".into())));
        assert_eq!(
            col(&s, &row, "old_name"),
            Some(Cell::Str("old name".into()))
        );
        assert_eq!(col(&s, &row, "id"), Some(Cell::Str("k1".into())));
    }

    /// An OLD_IMAGE stream's MODIFY carries only the item before the change: kept in `old_`
    /// columns even when old images are not asked for, instead of a row of keys only.
    #[test]
    fn a_modify_with_only_its_old_image_keeps_it_in_old_columns() {
        let mut s = TableSchema::new("T", None);
        let text = r#"{"eventName":"MODIFY","tableName":"T","dynamodb":{
            "ApproximateCreationDateTime":1795000000331,"Keys":{"Id":{"S":"k1"}},
            "OldImage":{"Id":{"S":"k1"},"Name":{"S":"before"}}}}"#;
        let r = parse_record(text.as_bytes()).unwrap();
        let row = flatten(
            &mut s,
            &r.view(),
            &Position::default(),
            0,
            FlattenOptions::default(),
        );
        assert_eq!(col(&s, &row, "old_name"), Some(Cell::Str("before".into())));
        assert_eq!(col(&s, &row, "name"), None, "not the item after the change");
        assert_eq!(col(&s, &row, "id"), Some(Cell::Str("k1".into())));
        // With both images (NEW_AND_OLD_IMAGES), old columns stay off unless asked for.
        let both = rec(
            r#"{"Id":{"S":"k2"},"Name":{"S":"after"}}"#,
            "MODIFY",
            Some(r#"{"Id":{"S":"k2"},"Size":{"N":"1"}}"#),
        );
        let r = parse_record(both.as_bytes()).unwrap();
        let row = flatten(
            &mut s,
            &r.view(),
            &Position::default(),
            0,
            FlattenOptions::default(),
        );
        assert_eq!(col(&s, &row, "name"), Some(Cell::Str("after".into())));
        assert_eq!(col(&s, &row, "old_size"), None);
    }

    #[test]
    fn declared_paths_deeper_than_the_flatten_depth_are_followed() {
        let mut s = TableSchema::new("T", None);
        s.add_attr_column(Image::New, &["A", "b", "c", "d"], ColumnType::Bigint, 100);
        let text = rec(
            r#"{"A":{"M":{"b":{"M":{"c":{"M":{"d":{"N":"7"}}}}}}}}"#,
            "INSERT",
            None,
        );
        let r = parse_record(text.as_bytes()).unwrap();
        let row = flatten(
            &mut s,
            &r.view(),
            &Position::default(),
            0,
            FlattenOptions::default(),
        );
        assert_eq!(col(&s, &row, "a_b_c_d"), Some(Cell::I64(7)));
    }

    #[test]
    fn long_strings_are_kept_cut_and_flagged_or_rejected_per_column() {
        static COLUMNS: std::sync::LazyLock<Vec<(String, StringPolicy)>> =
            std::sync::LazyLock::new(|| vec![("b".to_string(), StringPolicy::Reject)]);
        let text = rec(
            r#"{"Id":{"S":"k1"},"A":{"S":"éééééX"},"B":{"S":"short"}}"#,
            "INSERT",
            None,
        );
        let r = parse_record(text.as_bytes()).unwrap();
        let o = FlattenOptions {
            strings: StringLimit {
                max_bytes: 6,
                policy: StringPolicy::Truncate,
                columns: &COLUMNS,
            },
            ..FlattenOptions::default()
        };
        let mut s = TableSchema::new("T", None);
        let row = flatten(&mut s, &r.view(), &Position::default(), 0, o);
        // 10 bytes cut to 6 (a character boundary), and flagged.
        assert_eq!(col(&s, &row, "a"), Some(Cell::Str("ééé".into())));
        assert_eq!(col(&s, &row, "cdc_truncated"), Some(Cell::Str("a".into())));
        assert_eq!(row.too_long, None);
        let text = rec(
            r#"{"Id":{"S":"k1"},"B":{"S":"much too long"}}"#,
            "INSERT",
            None,
        );
        let r = parse_record(text.as_bytes()).unwrap();
        let row = flatten(&mut s, &r.view(), &Position::default(), 0, o);
        assert_eq!(row.too_long, s.column_index("b"));
    }

    /// A name given twice in one map: one cell per column (two made the builders' columns of
    /// unequal length and the batch failed), the later value in `cdc_unmapped`.
    #[test]
    fn a_name_given_twice_keeps_one_cell_per_column() {
        let text = rec(
            r#"{"Id":{"S":"k1"},"A":{"S":"first"},"A":{"S":"second"},"N":{"N":"1"},"N":{"S":"x"},"N":{"S":"y"}}"#,
            "INSERT",
            None,
        );
        let r = parse_record(text.as_bytes()).unwrap();
        let mut s = TableSchema::new("T", None);
        let row = flatten(
            &mut s,
            &r.view(),
            &Position::default(),
            0,
            FlattenOptions::default(),
        );
        let mut cols: Vec<_> = row.cells.iter().map(|(c, _)| *c).collect();
        cols.sort();
        cols.dedup();
        assert_eq!(cols.len(), row.cells.len(), "one cell per column");
        assert_eq!(col(&s, &row, "a"), Some(Cell::Str("first".into())));
        assert_eq!(col(&s, &row, "n"), Some(Cell::I64(1)));
        assert_eq!(col(&s, &row, "n_str"), Some(Cell::Str("x".into())));
        assert_eq!(
            col(&s, &row, "cdc_unmapped"),
            Some(Cell::Str(r#"{"NewImage":{"A":"second","N":"y"}}"#.into()))
        );
    }

    #[test]
    fn over_budget_goes_to_unmapped_json() {
        let mut s = TableSchema::new("T", None);
        let o = FlattenOptions {
            max_columns: s.len() + 1,
            ..FlattenOptions::default()
        };
        let text = rec(
            r#"{"Id":{"S":"k1"},"Doc":{"M":{"a":{"N":"1"},"b":{"S":"x"}}},"Z":{"BOOL":true}}"#,
            "INSERT",
            None,
        );
        let r = parse_record(text.as_bytes()).unwrap();
        let row = flatten(&mut s, &r.view(), &Position::default(), 0, o);
        assert_eq!(col(&s, &row, "id"), Some(Cell::Str("k1".into())));
        assert_eq!(
            col(&s, &row, "cdc_unmapped"),
            Some(Cell::Str(
                r#"{"NewImage":{"Doc":{"a":1,"b":"x"},"Z":true}}"#.into()
            ))
        );
        assert_eq!(row.unmapped, 1);
    }
}
