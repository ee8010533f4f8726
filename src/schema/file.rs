//! Schema files: a table's columns as `schemas/NAME.toml` declares them and as the remembered
//! state next to the output holds them, read into a [`TableSchema`] (validated) and written back.

use serde::{Deserialize, Serialize};

use super::{naming, Column, ColumnType, Image, Meta, Source, TableSchema};

/// One column as a schema file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Column name: lowercase `[a-z0-9_]`, starting with a letter, at most 127 bytes.
    pub name: String,
    /// string, bigint, int, double, decimal(p,s), boolean, timestamp, date, binary, json, `list<T>`.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Attribute path: names of the attribute and of the nested map keys leading to the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<String>>,
    /// Which image the path reads: `new` (default) or `old`.
    #[serde(default, skip_serializing_if = "is_new")]
    pub image: Image,
    /// A metadata column instead of an attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// A companion column holding values that did not fit the named column's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companion_of: Option<String>,
}

fn is_new(i: &Image) -> bool {
    *i == Image::New
}

/// A table's schema file (`schemas/NAME.toml`, and the remembered state next to the output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaFile {
    /// The DynamoDB table name this schema applies to.
    pub table: String,
    /// The lake table name (its folder, its Athena table); default: the table name sanitized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The DynamoDB table's key attributes (partition key, then sort key), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// Ordered columns. Metadata columns not listed are added in front.
    pub columns: Vec<ColumnSpec>,
}

/// Why a schema file cannot be read into a [`TableSchema`], or merged into one.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A declared column is invalid: its name, a duplicate, its source or its metadata type.
    #[error("table {table}: column `{name}`: {problem}")]
    Column {
        /// The DynamoDB table name the schema applies to.
        table: String,
        /// The column's name as declared.
        name: String,
        /// What is wrong with the column.
        problem: String,
    },
    /// Declared key attributes differ from the remembered ones.
    #[error("table {table}: the key is {stored:?} in the remembered schema but declared {declared:?}; a table's key never changes")]
    KeyChange {
        /// The DynamoDB table name the schema applies to.
        table: String,
        /// The remembered key attributes.
        stored: Vec<String>,
        /// The declared ones.
        declared: Vec<String>,
    },
    /// A declared column has a different type than the remembered column of the same name.
    #[error("table {table}: column `{name}` is {stored} in the remembered schema but declared {declared}; a column's type never changes (rename the declared column)")]
    TypeChange {
        /// The DynamoDB table name the schema applies to.
        table: String,
        /// The column's name.
        name: String,
        /// The type in the remembered schema (the type of the files already written).
        stored: ColumnType,
        /// The type the schema file declares.
        declared: ColumnType,
    },
}

impl TableSchema {
    /// Builds a schema from a schema file, validating names and sources.
    pub fn from_file(file: &SchemaFile) -> Result<Self, SchemaError> {
        let name = file.name.clone();
        let mut s = TableSchema::empty(&file.table, name.as_deref());
        if !file.columns.iter().any(|c| c.meta.is_some()) {
            s.add_missing_meta();
        }
        for spec in &file.columns {
            s.add_spec(spec)?;
        }
        s.add_missing_meta();
        if let Some(keys) = &file.keys {
            s.learn_keys(keys);
        }
        Ok(s)
    }

    fn add_spec(&mut self, spec: &ColumnSpec) -> Result<usize, SchemaError> {
        let table = self.table.clone();
        let err = |problem: String| SchemaError::Column {
            table: table.clone(),
            name: spec.name.clone(),
            problem,
        };
        if naming::valid_name(&spec.name) != spec.name && !is_plain_name(&spec.name) {
            return Err(err(
                "names must be lowercase [a-z0-9_], start with a letter and be at most 127 bytes"
                    .into(),
            ));
        }
        if self.names.contains_key(&spec.name) {
            return Err(err("declared twice".into()));
        }
        let source = match (&spec.meta, &spec.path, &spec.companion_of) {
            (Some(m), None, None) => {
                if self.meta.contains_key(m) {
                    return Err(err(format!("metadata column {m:?} listed twice")));
                }
                if spec.ty != m.column_type() {
                    return Err(err(format!("metadata column must be {}", m.column_type())));
                }
                Source::Meta(*m)
            }
            (None, Some(path), None) if !path.is_empty() => {
                let node = self.node_for(spec.image, path);
                if self.nodes[node].column.is_some() {
                    return Err(err("another column already reads this path".into()));
                }
                Source::Attr {
                    image: spec.image,
                    path: path.clone(),
                }
            }
            (None, None, Some(of)) => {
                let &idx = self
                    .names
                    .get(of)
                    .ok_or_else(|| err(format!("companion of unknown column `{of}`")))?;
                if self.companions[idx].is_some() {
                    return Err(err(format!("`{of}` already has a companion column")));
                }
                Source::Companion(idx)
            }
            _ => {
                return Err(err(
                    "needs exactly one of `path` (non-empty), `meta` or `companion_of`".into(),
                ))
            }
        };
        Ok(self.push(Column {
            name: spec.name.clone(),
            ty: spec.ty.clone(),
            source,
        }))
    }

    /// Appends the declared columns this schema lacks; a declared column whose type differs from
    /// the remembered one is an error.
    pub fn merge_declared(&mut self, declared: &TableSchema) -> Result<(), SchemaError> {
        match (self.keys(), declared.keys()) {
            (Some(a), Some(b)) if a != b => {
                return Err(SchemaError::KeyChange {
                    table: self.table.clone(),
                    stored: a.to_vec(),
                    declared: b.to_vec(),
                })
            }
            (None, Some(b)) => {
                self.learn_keys(b);
            }
            _ => {}
        }
        for col in &declared.columns {
            if let Some(&idx) = self.names.get(&col.name) {
                let stored = &mut self.columns[idx];
                if stored.ty.arrow() == col.ty.arrow() {
                    // Same stored type: the declared reading (e.g. a timestamp format) wins.
                    stored.ty = col.ty.clone();
                    self.arrow = None;
                    continue;
                }
                if stored.ty != col.ty {
                    return Err(SchemaError::TypeChange {
                        table: self.table.clone(),
                        name: col.name.clone(),
                        stored: stored.ty.clone(),
                        declared: col.ty.clone(),
                    });
                }
                continue;
            }
            let spec = declared.spec(col);
            self.add_spec(&spec)?;
        }
        Ok(())
    }

    pub(super) fn spec(&self, col: &Column) -> ColumnSpec {
        let (path, image, meta, companion_of) = match &col.source {
            Source::Meta(m) => (None, Image::New, Some(*m), None),
            Source::Attr { image, path } => (Some(path.clone()), *image, None, None),
            Source::Companion(of) => (None, Image::New, None, Some(self.columns[*of].name.clone())),
        };
        ColumnSpec {
            name: col.name.clone(),
            ty: col.ty.clone(),
            path,
            image,
            meta,
            companion_of,
        }
    }

    /// This schema as a schema file.
    pub fn to_file(&self) -> SchemaFile {
        SchemaFile {
            table: self.table.clone(),
            name: Some(self.name.clone()),
            keys: self.keys.clone(),
            columns: self.columns.iter().map(|c| self.spec(c)).collect(),
        }
    }
}

/// A name that is lowercase `[a-z0-9_]`, starts with a letter and fits 127 bytes (reserved words
/// are allowed when declared explicitly).
fn is_plain_name(name: &str) -> bool {
    name.len() <= naming::MAX_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_merge() {
        let mut s = TableSchema::new("Orders", None);
        let a = s
            .add_attr_column(Image::New, &["Doc", "state"], ColumnType::String, 100)
            .unwrap();
        s.add_attr_column(Image::Old, &["Doc", "state"], ColumnType::String, 100);
        s.companion(a, 100);
        let text = toml::to_string(&s.to_file()).unwrap();
        let back: SchemaFile = toml::from_str(&text).unwrap();
        let s2 = TableSchema::from_file(&back).unwrap();
        assert_eq!(s2.columns(), s.columns());
        assert_eq!(s2.keys(), None);
        let mut keyed = s.clone();
        assert!(keyed.learn_keys(&["Pk", "Sk"]));
        assert!(!keyed.learn_keys(&["Other"]), "a table's key never changes");
        let text = toml::to_string(&keyed.to_file()).unwrap();
        assert!(text.contains(r#"keys = ["Pk", "Sk"]"#), "{text}");
        let back = TableSchema::from_file(&toml::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.keys(), Some(&["Pk".to_string(), "Sk".to_string()][..]));
        let mut other = back.clone();
        let mut declared = TableSchema::new("Orders", None);
        declared.learn_keys(&["Id"]);
        assert!(matches!(
            other.merge_declared(&declared),
            Err(SchemaError::KeyChange { .. })
        ));

        let declared: SchemaFile = toml::from_str(
            r#"table = "Orders"
            [[columns]]
            name = "total"
            type = "decimal(12,2)"
            path = ["Total"]
            [[columns]]
            name = "doc_state"
            type = "string"
            path = ["Doc", "state"]
            "#,
        )
        .unwrap();
        let declared = TableSchema::from_file(&declared).unwrap();
        let mut merged = s2.clone();
        merged.merge_declared(&declared).unwrap();
        assert_eq!(merged.len(), s2.len() + 1);
        assert_eq!(merged.columns().last().unwrap().name, "total");

        let conflicting: SchemaFile = toml::from_str(
            r#"table = "Orders"
            [[columns]]
            name = "doc_state"
            type = "bigint"
            path = ["Doc", "state"]
            "#,
        )
        .unwrap();
        let conflicting = TableSchema::from_file(&conflicting).unwrap();
        assert!(matches!(
            merged.merge_declared(&conflicting),
            Err(SchemaError::TypeChange { .. })
        ));
    }

    #[test]
    fn rejects_bad_schema_files() {
        for cols in [
            r#"name = "Bad-Name"
               type = "string"
               path = ["a"]"#,
            r#"name = "a"
               type = "string""#,
            r#"name = "a"
               type = "string"
               companion_of = "nope""#,
        ] {
            let text = format!("table = \"t\"\n[[columns]]\n{cols}\n");
            let file: SchemaFile = toml::from_str(&text).unwrap();
            assert!(TableSchema::from_file(&file).is_err(), "{cols}");
        }
    }
}
