//! Partition stage: the folder a row is written under, from a template over UTC time and column
//! values. Values taken from records are sanitized so that none escapes its folder.

use std::fmt::Write;

use chrono::{DateTime, Datelike, Timelike};

use crate::flatten::{Cell, Row};
use crate::schema::TableSchema;

/// The Hive name for a missing value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
/// Longest sanitized value kept whole; longer ones keep a prefix and a hash.
const MAX_VALUE_BYTES: usize = 128;

/// Preset layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `{table}/YYYY/MM/DD/HH`, as Firehose writes.
    Hourly,
    /// `{table}/year=YYYY/month=MM/day=DD/hour=HH`.
    Hive,
    /// `{table}/dt=YYYY-MM-DD/hr=HH`.
    HiveDt,
}

impl Layout {
    /// The layout's partition template, as `output.template` would spell it.
    pub fn template(self) -> &'static str {
        match self {
            Layout::Hourly => "{table}/{YYYY}/{MM}/{DD}/{HH}",
            Layout::Hive => "{table}/year={YYYY}/month={MM}/day={DD}/hour={HH}",
            Layout::HiveDt => "{table}/dt={YYYY}-{MM}-{DD}/hr={HH}",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Table,
    Year,
    Month,
    Day,
    Hour,
    /// A column's value, by column name.
    Column(String),
}

/// A parsed partition template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    text: String,
}

/// Why a partition template was rejected; each variant holds the template's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` has no matching `}`.
    #[error("partition template `{0}`: unclosed `{{`")]
    Unclosed(String),
    /// The template lacks `{table}`, so tables would share folders.
    #[error(
        "partition template `{0}` must contain {{table}} so that each table has its own folder"
    )]
    NoTable(String),
    /// The template starts with `_`, `.` or `/` (Athena hides such folders, or they escape the
    /// output).
    #[error("partition template `{0}` must not start with `_`, `.` or `/` (such paths are hidden from Athena or escape the output)")]
    BadStart(String),
    /// Literal text contains `..` or a backslash.
    #[error("partition template `{0}`: literal text may not contain `..` or `\\`")]
    BadLiteral(String),
}

impl Template {
    /// Parses a template such as `{table}/state={ship_to_state}/{YYYY}/{MM}/{DD}/{HH}`;
    /// `{YYYY}`, `{MM}`, `{DD}`, `{HH}` are UTC time parts, any other `{name}` a column's value.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| TemplateError::Unclosed(text.into()))?
                + open;
            let name = &rest[open + 1..close];
            parts.push(match name {
                "table" => Part::Table,
                "YYYY" => Part::Year,
                "MM" => Part::Month,
                "DD" => Part::Day,
                "HH" => Part::Hour,
                col => Part::Column(col.to_string()),
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        if !parts.contains(&Part::Table) {
            return Err(TemplateError::NoTable(text.into()));
        }
        if text.starts_with(['_', '.', '/']) {
            return Err(TemplateError::BadStart(text.into()));
        }
        if parts
            .iter()
            .any(|p| matches!(p, Part::Literal(l) if l.contains("..") || l.contains('\\')))
        {
            return Err(TemplateError::BadLiteral(text.into()));
        }
        Ok(Template {
            parts,
            text: text.trim_end_matches('/').to_string(),
        })
    }

    /// The template's text, without trailing slashes.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the folder names the hour completely (year, month, day and hour), so that two
    /// different hours never share a folder.
    pub fn fixes_hour(&self) -> bool {
        [Part::Year, Part::Month, Part::Day, Part::Hour]
            .iter()
            .all(|p| self.parts.contains(p))
    }

    /// Column names the template reads.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Column(c) => Some(c.as_str()),
            _ => None,
        })
    }

    /// The partition path for a row (no trailing slash).
    pub fn render(&self, schema: &TableSchema, row: &Row, time_us: i64) -> String {
        self.render_with(&schema.name, time_us, |c| {
            let value = schema
                .column_index(c)
                .and_then(|i| row.get(i))
                .and_then(cell_text);
            sanitize(value.as_deref())
        })
    }

    /// Partition key names, in order: `year`, `month`, `day`, `hour` for the time parts and the
    /// column name for column values.
    pub fn keys(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Year => Some("year".to_string()),
                Part::Month => Some("month".into()),
                Part::Day => Some("day".into()),
                Part::Hour => Some("hour".into()),
                Part::Column(c) => Some(c.clone()),
                Part::Literal(_) | Part::Table => None,
            })
            .collect()
    }

    /// The key values of a partition folder of `table` (as rendered), or `None` if `path` is not
    /// one. Time parts take their fixed widths; a column value runs to the next literal text.
    pub fn match_path(&self, table: &str, path: &str) -> Option<Vec<String>> {
        let mut rest = path;
        let mut values = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            let take = |rest: &mut &str, n: usize| -> Option<String> {
                let v = rest.get(..n)?;
                if !v.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                *rest = &rest[n..];
                Some(v.to_string())
            };
            match p {
                Part::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Part::Table => rest = rest.strip_prefix(table)?,
                Part::Year => values.push(take(&mut rest, 4)?),
                Part::Month | Part::Day | Part::Hour => values.push(take(&mut rest, 2)?),
                Part::Column(_) => {
                    let end = match self.parts.get(i + 1) {
                        Some(Part::Literal(l)) => rest.find(l.as_str())?,
                        _ => rest.len(),
                    };
                    values.push(rest[..end].to_string());
                    rest = &rest[end..];
                }
            }
        }
        rest.trim_end_matches('/').is_empty().then_some(values)
    }

    /// The hours a partition folder of `table` covers, `[start, end)` in hours since the epoch,
    /// from the time parts the template has (a missing part spans all its values: a daily
    /// folder covers 24 hours); `None` when the folder is not one, or names no year.
    pub fn span(&self, table: &str, folder: &str) -> Option<(i64, i64)> {
        use chrono::{Months, NaiveDate};
        let keys = self.keys();
        let values = self.match_path(table, folder)?;
        let part = |name: &str| -> Option<Option<u32>> {
            match keys.iter().position(|k| k == name) {
                Some(i) => values.get(i)?.parse().ok().map(Some),
                None => Some(None),
            }
        };
        let year = part("year")?? as i32;
        let (month, day, hour) = (part("month")?, part("day")?, part("hour")?);
        let first = NaiveDate::from_ymd_opt(year, month.unwrap_or(1), day.unwrap_or(1))?;
        let start = first.and_hms_opt(hour.unwrap_or(0), 0, 0)?.and_utc();
        let end = match (month, day, hour) {
            (_, _, Some(_)) => start + chrono::Duration::hours(1),
            (_, Some(_), None) => start + chrono::Duration::days(1),
            (Some(_), None, None) => start.checked_add_months(Months::new(1))?,
            (None, None, None) => start.checked_add_months(Months::new(12))?,
        };
        Some((
            start.timestamp().div_euclid(3600),
            end.timestamp().div_euclid(3600),
        ))
    }

    /// The partition path of a table's hour, for templates without column values.
    pub fn render_time(&self, table: &str, time_us: i64) -> String {
        self.render_with(table, time_us, |_| sanitize(None))
    }

    fn render_with(&self, table: &str, time_us: i64, column: impl Fn(&str) -> String) -> String {
        let t = DateTime::from_timestamp_micros(time_us).unwrap_or_default();
        let mut out = String::with_capacity(64);
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Table => out.push_str(table),
                Part::Year => {
                    let _ = write!(out, "{:04}", t.year());
                }
                Part::Month => {
                    let _ = write!(out, "{:02}", t.month());
                }
                Part::Day => {
                    let _ = write!(out, "{:02}", t.day());
                }
                Part::Hour => {
                    let _ = write!(out, "{:02}", t.hour());
                }
                Part::Column(c) => out.push_str(&column(c)),
            }
        }
        while out.ends_with('/') {
            out.pop();
        }
        out
    }
}

fn cell_text(c: &Cell) -> Option<String> {
    Some(match c {
        Cell::Null | Cell::List(_) | Cell::Bin(_) => return None,
        Cell::Str(s) => s.to_string(),
        Cell::I64(v) => v.to_string(),
        Cell::I32(v) => v.to_string(),
        Cell::F64(v) => v.to_string(),
        Cell::Dec(v) => v.to_string(),
        Cell::Bool(v) => v.to_string(),
        Cell::Ts(v) => v.to_string(),
        Cell::Date(v) => v.to_string(),
    })
}

/// Makes a record's value safe as one path segment: bytes outside `[A-Za-z0-9_-]` and dots are
/// percent-encoded (so `/`, `..` and `\` cannot escape the folder); empty or missing values
/// become Hive's default partition; long values keep a prefix and a hash.
pub fn sanitize(value: Option<&str>) -> String {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return NULL_PARTITION.to_string();
    };
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.len() > MAX_VALUE_BYTES {
        let hash = crate::store::short_hash(v.as_bytes(), 8);
        out.truncate(MAX_VALUE_BYTES - 17);
        while out.ends_with('%') || out.as_bytes()[out.len() - 2] == b'%' {
            out.pop();
        }
        out.push('-');
        out.push_str(&hash);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, Image};

    #[test]
    fn layouts_render() {
        let s = TableSchema::new("Orders", None);
        let row = Row::default();
        let t = 1_795_000_000_331_000; // 2026-11-18T11:06:40Z
        let render = |l: Layout| Template::parse(l.template()).unwrap().render(&s, &row, t);
        assert_eq!(render(Layout::Hourly), "orders/2026/11/18/11");
        assert_eq!(
            render(Layout::Hive),
            "orders/year=2026/month=11/day=18/hour=11"
        );
        assert_eq!(render(Layout::HiveDt), "orders/dt=2026-11-18/hr=11");
    }

    #[test]
    fn hostile_values_stay_in_their_folder() {
        let mut s = TableSchema::new("t", None);
        let c = s
            .add_attr_column(Image::New, &["state"], ColumnType::String, 100)
            .unwrap();
        let tpl = Template::parse("raw/{table}/state={state}/{YYYY}").unwrap();
        for (v, want) in [
            ("../..", "state=%2E%2E%2F%2E%2E"),
            ("a/b", "state=a%2Fb"),
            ("", "state=__HIVE_DEFAULT_PARTITION__"),
            ("WA", "state=WA"),
            ("..", "state=%2E%2E"),
            ("a\\b", "state=a%5Cb"),
        ] {
            let row = Row {
                cells: vec![(c, Cell::Str(v.into()))],
                ..Row::default()
            };
            let path = tpl.render(&s, &row, 0);
            assert_eq!(path, format!("raw/t/{want}/1970"));
            assert!(path
                .split('/')
                .all(|seg| seg != ".." && seg != "." && !seg.is_empty()));
        }
        let missing = tpl.render(&s, &Row::default(), 0);
        assert_eq!(missing, "raw/t/state=__HIVE_DEFAULT_PARTITION__/1970");
        let long = sanitize(Some(&"é".repeat(200)));
        assert!(long.len() <= MAX_VALUE_BYTES, "{}", long.len());
        assert_ne!(long, sanitize(Some(&"é".repeat(201))));
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(matches!(
            Template::parse("{YYYY}"),
            Err(TemplateError::NoTable(_))
        ));
        assert!(matches!(
            Template::parse("_x/{table}"),
            Err(TemplateError::BadStart(_))
        ));
        assert!(matches!(
            Template::parse("../{table}"),
            Err(TemplateError::BadStart(_))
        ));
        assert!(matches!(
            Template::parse("a/../{table}"),
            Err(TemplateError::BadLiteral(_))
        ));
        assert!(matches!(
            Template::parse("{table}/{x"),
            Err(TemplateError::Unclosed(_))
        ));
    }
}
