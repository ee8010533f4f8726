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

macro_rules! downcast {
    ($b:expr, $t:ty) => {
        $b.as_any_mut()
            .downcast_mut::<$t>()
            .expect("builder matches its column type")
    };
}

/// A column's builder, by type: appends go straight to the concrete builder (a downcast per
/// value showed in the profile), lists through the boxed builder of their values.
enum Builder {
    Str(StringBuilder),
    Bin(BinaryBuilder),
    I64(Int64Builder),
    I32(Int32Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    List(Box<dyn ArrayBuilder>),
}

impl Builder {
    /// A builder with no preallocated capacity, so an open partition costs little until it has
    /// rows.
    fn new(ty: &ColumnType) -> Builder {
        match ty {
            ColumnType::String | ColumnType::Json => {
                Builder::Str(StringBuilder::with_capacity(0, 0))
            }
            ColumnType::Binary => Builder::Bin(BinaryBuilder::with_capacity(0, 0)),
            ColumnType::Bigint => Builder::I64(Int64Builder::with_capacity(0)),
            ColumnType::Int => Builder::I32(Int32Builder::with_capacity(0)),
            ColumnType::Double => Builder::F64(Float64Builder::with_capacity(0)),
            ColumnType::Decimal { .. } => {
                Builder::Dec(Decimal128Builder::with_capacity(0).with_data_type(ty.arrow()))
            }
            ColumnType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(0)),
            ColumnType::Timestamp(_) => Builder::Ts(
                TimestampMicrosecondBuilder::with_capacity(0).with_data_type(ty.arrow()),
            ),
            ColumnType::Date(_) => Builder::Date(Date32Builder::with_capacity(0)),
            ColumnType::List(_) => Builder::List(make_builder(&ty.arrow(), 0)),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Builder::Str(b) => b.append_nulls(n),
            Builder::Bin(b) => b.append_nulls(n),
            Builder::I64(b) => b.append_nulls(n),
            Builder::I32(b) => b.append_nulls(n),
            Builder::F64(b) => b.append_nulls(n),
            Builder::Dec(b) => b.append_nulls(n),
            Builder::Bool(b) => b.append_nulls(n),
            Builder::Ts(b) => b.append_nulls(n),
            Builder::Date(b) => b.append_nulls(n),
            Builder::List(b) => downcast!(b, ListBuilder<Box<dyn ArrayBuilder>>).append_nulls(n),
        }
    }

    /// Appends a cell (a null when it does not match the column's type); returns the bytes the
    /// value takes (a null: [`null_bytes`]).
    fn append(&mut self, ty: &ColumnType, cell: &Cell) -> usize {
        match (self, cell) {
            (Builder::Str(b), Cell::Str(s)) => {
                b.append_value(s);
                s.len() + 4
            }
            (Builder::Bin(b), Cell::Bin(v)) => {
                b.append_value(v);
                v.len() + 4
            }
            (Builder::I64(b), Cell::I64(v)) => {
                b.append_value(*v);
                8
            }
            (Builder::I32(b), Cell::I32(v)) => {
                b.append_value(*v);
                4
            }
            (Builder::F64(b), Cell::F64(v)) => {
                b.append_value(*v);
                8
            }
            (Builder::Dec(b), Cell::Dec(v)) => {
                b.append_value(*v);
                16
            }
            (Builder::Bool(b), Cell::Bool(v)) => {
                b.append_value(*v);
                1
            }
            (Builder::Ts(b), Cell::Ts(v)) => {
                b.append_value(*v);
                8
            }
            (Builder::Date(b), Cell::Date(v)) => {
                b.append_value(*v);
                4
            }
            (Builder::List(b), c) => append(b.as_mut(), ty, c),
            (b, _) => {
                b.append_nulls(1);
                null_bytes(ty)
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Bin(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Dec(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::List(b) => b.finish(),
        }
    }
}

/// The bytes a null takes in a column of type `ty`, as [`append`] counts it.
fn null_bytes(ty: &ColumnType) -> usize {
    match ty {
        ColumnType::String | ColumnType::Json | ColumnType::Binary | ColumnType::List(_) => 4,
        ColumnType::Bigint | ColumnType::Double | ColumnType::Timestamp(_) => 8,
        ColumnType::Int | ColumnType::Date(_) => 4,
        ColumnType::Decimal { .. } => 16,
        ColumnType::Boolean => 1,
    }
}

struct Column {
    ty: ColumnType,
    field: Field,
    builder: Builder,
    /// Values appended so far. The nulls of rows with no cell here are appended lazily, in one
    /// call before the column's next value and at the end.
    len: usize,
    null_bytes: usize,
}

/// Appends a cell (or a null) to a list values' builder of type `ty`; returns the bytes the
/// value takes.
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
    /// The bytes a row of nulls takes in every column (a row is charged it for its missing cells).
    null_row_bytes: usize,
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
            null_row_bytes: 0,
        }
    }

    /// Rows appended since the chunk was created or last finished.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of values appended so far (nulls included), plus `COLUMN_OVERHEAD` per column.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a row; returns the bytes it added. A column with no cell in the row is null in it.
    pub fn push(&mut self, schema: &TableSchema, row: &Row) -> usize {
        while self.columns.len() < schema.len() {
            let col = &schema.columns()[self.columns.len()];
            let ty = col.ty.clone();
            let field = Field::new(&col.name, ty.arrow(), true);
            let null_bytes = null_bytes(&ty);
            self.bytes += COLUMN_OVERHEAD;
            self.null_row_bytes += null_bytes;
            self.columns.push(Column {
                builder: Builder::new(&ty),
                ty,
                field,
                len: 0,
                null_bytes,
            });
        }
        let mut added = self.null_row_bytes;
        for (col, cell) in &row.cells {
            let c = &mut self.columns[*col];
            if c.len < self.rows {
                c.builder.append_nulls(self.rows - c.len);
            }
            added += c.builder.append(&c.ty, cell);
            added -= c.null_bytes;
            c.len = self.rows + 1;
        }
        self.rows += 1;
        self.bytes += added;
        added
    }

    /// Finishes the rows into a batch holding this chunk's columns (a prefix of the table's).
    pub fn finish(&mut self) -> RecordBatch {
        let rows = self.rows;
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| {
                if c.len < rows {
                    c.builder.append_nulls(rows - c.len);
                }
                c.builder.finish()
            })
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
