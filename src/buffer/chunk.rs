//! Rows appended into Arrow builders, finished into record batches of up to `CHUNK_ROWS` rows.

use std::sync::Arc;

use arrow_array::builder::{
    make_builder, ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::ArrayRef;
use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};

use crate::flatten::{Cell, Row};
use crate::schema::{ColumnType, TableSchema};

/// Rows per record batch: large enough for efficient encoding, small enough that thousands of
/// open partitions each holding one unfinished chunk stay cheap.
pub const CHUNK_ROWS: usize = 8192;

/// Memory a column's builder holds beyond the values appended to it (the boxed builder, its
/// buffers' minimum 64-byte allocations and their growth, the null bitmap), charged to the
/// chunk's size so that the memory budget also covers thousands of partitions holding a few rows
/// each. Measured: 10,000 open partitions of 3 rows and 36 columns held about 22 KB each beyond
/// their values (docs/BENCHMARKS.md, "Scaling and open partitions").
pub const COLUMN_OVERHEAD: usize = 640;

struct Column {
    ty: ColumnType,
    field: Field,
    builder: Box<dyn ArrayBuilder>,
}

/// A builder with no preallocated capacity, so an open partition costs little until it has rows.
fn empty_builder(ty: &ColumnType) -> Box<dyn ArrayBuilder> {
    match ty {
        ColumnType::String | ColumnType::Json => Box::new(StringBuilder::with_capacity(0, 0)),
        ColumnType::Binary => Box::new(BinaryBuilder::with_capacity(0, 0)),
        other => make_builder(&other.arrow(), 0),
    }
}

macro_rules! downcast {
    ($b:expr, $t:ty) => {
        $b.as_any_mut()
            .downcast_mut::<$t>()
            .expect("builder matches its column type")
    };
}

/// Appends a cell (or a null) to a builder of type `ty`; returns the bytes the value takes.
fn append(b: &mut dyn ArrayBuilder, ty: &ColumnType, cell: &Cell) -> usize {
    let null = matches!(cell, Cell::Null);
    match (ty, cell) {
        (ColumnType::String | ColumnType::Json, Cell::Str(s)) => {
            downcast!(b, StringBuilder).append_value(s);
            s.len() + 4
        }
        (ColumnType::String | ColumnType::Json, _) => {
            downcast!(b, StringBuilder).append_null();
            4
        }
        (ColumnType::Binary, Cell::Bin(v)) => {
            downcast!(b, BinaryBuilder).append_value(v);
            v.len() + 4
        }
        (ColumnType::Binary, _) => {
            downcast!(b, BinaryBuilder).append_null();
            4
        }
        (ColumnType::Bigint, c) => {
            let v = match c {
                Cell::I64(v) => Some(*v),
                _ => None,
            };
            downcast!(b, Int64Builder).append_option(v);
            8
        }
        (ColumnType::Int, c) => {
            let v = match c {
                Cell::I32(v) => Some(*v),
                _ => None,
            };
            downcast!(b, Int32Builder).append_option(v);
            4
        }
        (ColumnType::Double, c) => {
            let v = match c {
                Cell::F64(v) => Some(*v),
                _ => None,
            };
            downcast!(b, Float64Builder).append_option(v);
            8
        }
        (ColumnType::Decimal { .. }, c) => {
            let v = match c {
                Cell::Dec(v) => Some(*v),
                _ => None,
            };
            downcast!(b, Decimal128Builder).append_option(v);
            16
        }
        (ColumnType::Boolean, c) => {
            let v = match c {
                Cell::Bool(v) => Some(*v),
                _ => None,
            };
            downcast!(b, BooleanBuilder).append_option(v);
            1
        }
        (ColumnType::Timestamp(_), c) => {
            let v = match c {
                Cell::Ts(v) => Some(*v),
                _ => None,
            };
            downcast!(b, TimestampMicrosecondBuilder).append_option(v);
            8
        }
        (ColumnType::Date(_), c) => {
            let v = match c {
                Cell::Date(v) => Some(*v),
                _ => None,
            };
            downcast!(b, Date32Builder).append_option(v);
            4
        }
        (ColumnType::List(inner), c) => {
            let lb = downcast!(b, ListBuilder<Box<dyn ArrayBuilder>>);
            let mut size = 4;
            if let (Cell::List(items), false) = (c, null) {
                for item in items {
                    size += append(lb.values().as_mut(), inner, item);
                }
                lb.append(true);
            } else {
                lb.append(false);
            }
            size
        }
    }
}

/// An unfinished batch of rows of one table.
pub struct Chunk {
    columns: Vec<Column>,
    rows: usize,
    bytes: usize,
    /// For each column, the row count after it was last written (to find columns to null).
    written: Vec<usize>,
}

impl Default for Chunk {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunk {
    /// An empty chunk with no columns; columns are added as rows of a wider schema arrive.
    pub fn new() -> Self {
        Chunk {
            columns: Vec::new(),
            rows: 0,
            bytes: 0,
            written: Vec::new(),
        }
    }

    /// Rows appended since the chunk was created or last finished.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of values appended so far, plus `COLUMN_OVERHEAD` per column.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a row; returns the bytes it added.
    pub fn push(&mut self, schema: &TableSchema, row: &Row) -> usize {
        while self.columns.len() < schema.len() {
            let col = &schema.columns()[self.columns.len()];
            let ty = col.ty.clone();
            let field = Field::new(&col.name, ty.arrow(), true);
            let mut builder = empty_builder(&ty);
            for _ in 0..self.rows {
                append(builder.as_mut(), &ty, &Cell::Null);
            }
            self.columns.push(Column { ty, field, builder });
            self.written.push(self.rows);
            self.bytes += COLUMN_OVERHEAD;
        }
        let mut added = 0;
        for (col, cell) in &row.cells {
            let c = &mut self.columns[*col];
            added += append(c.builder.as_mut(), &c.ty, cell);
            self.written[*col] = self.rows + 1;
        }
        for (i, c) in self.columns.iter_mut().enumerate() {
            if self.written[i] != self.rows + 1 {
                added += append(c.builder.as_mut(), &c.ty, &Cell::Null);
                self.written[i] = self.rows + 1;
            }
        }
        self.rows += 1;
        self.bytes += added;
        added
    }

    /// Finishes the rows into a batch holding this chunk's columns (a prefix of the table's).
    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| c.builder.finish())
            .collect();
        let fields: Vec<Field> = self.columns.iter().map(|c| c.field.clone()).collect();
        let batch_schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(batch_schema, arrays).expect("builders match the schema");
        *self = Chunk::new();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Image;

    #[test]
    fn rows_fill_nulls_and_new_columns_backfill() {
        let mut s = TableSchema::new("t", None);
        let a = s
            .add_attr_column(Image::New, &["a"], ColumnType::Bigint, 100)
            .unwrap();
        let mut chunk = Chunk::new();
        let row = Row {
            cells: vec![(a, Cell::I64(1))],
            ..Row::default()
        };
        chunk.push(&s, &row);
        let l = s
            .add_attr_column(
                Image::New,
                &["l"],
                ColumnType::List(Box::new(ColumnType::String)),
                100,
            )
            .unwrap();
        let row2 = Row {
            cells: vec![(l, Cell::List(vec![Cell::Str("x".into())]))],
            ..Row::default()
        };
        chunk.push(&s, &row2);
        let batch = chunk.finish();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), s.len());
        assert_eq!(batch.column(a).null_count(), 1);
        assert_eq!(batch.column(l).null_count(), 1);
        assert_eq!(chunk.rows(), 0);
    }
}
