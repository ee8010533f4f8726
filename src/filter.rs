//! Filter stage, between decode and flatten: which records go on to the lake, by table, by
//! operation and by record patterns in the syntax of Lambda's event source mapping filter
//! criteria (EventBridge patterns). A filtered record is counted, never silently dropped.
//!
//! Patterns are matched against the record as a DynamoDB Streams record (the shape a Lambda
//! trigger on the table receives), built from the decoded record, so that one pattern means the
//! same for every source (files, Kinesis, DynamoDB Streams, exports in JSON or Ion):
//! `{"eventName", "eventID", "eventSource": "aws:dynamodb", "tableName", "userIdentity" (TTL
//! deletes), "dynamodb": {"Keys", "NewImage", "OldImage", "SequenceNumber",
//! "ApproximateCreationDateTime" (seconds)}}`, attribute values in DynamoDB JSON
//! (`{"S": "x"}`, numbers as strings). A Kinesis event source mapping's patterns wrap the record
//! in `data`; such a pattern is accepted as it is.

use serde_json::{Map, Value};

use crate::decode::{AttrValue, ChangeRecord, Item};

/// Why a filter setting is invalid.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A pattern is not JSON, not an object, or uses a matcher the syntax does not have.
    #[error("filter pattern {index} (`{pattern}`): {problem}")]
    Pattern {
        /// Its place in the list, from 1.
        index: usize,
        /// The pattern as given.
        pattern: String,
        /// What is wrong.
        problem: String,
    },
    /// An operation name that is none of INSERT, MODIFY, REMOVE, SNAPSHOT.
    #[error("filter operation `{0}`: expected INSERT, MODIFY, REMOVE or SNAPSHOT")]
    Operation(String),
}

/// What passes: every list that is set must let the record through (tables, operations, and
/// at least one pattern).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    tables: Vec<String>,
    operations: Vec<String>,
    patterns: Vec<Value>,
}

impl Filter {
    /// A filter from its settings (each list empty: no condition of that kind).
    pub fn new(
        tables: &[String],
        operations: &[String],
        patterns: &[String],
    ) -> Result<Self, FilterError> {
        let operations = operations
            .iter()
            .map(|o| {
                let up = o.to_ascii_uppercase();
                match up.as_str() {
                    "INSERT" | "MODIFY" | "REMOVE" | "SNAPSHOT" => Ok(up),
                    _ => Err(FilterError::Operation(o.clone())),
                }
            })
            .collect::<Result<_, _>>()?;
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let bad = |problem: String| FilterError::Pattern {
                    index: i + 1,
                    pattern: text.clone(),
                    problem,
                };
                let mut v: Value =
                    serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
                // A Kinesis event source mapping's pattern: the record is under `data`.
                if let Some(inner) = v
                    .as_object()
                    .filter(|o| o.len() == 1)
                    .and_then(|o| o.get("data"))
                {
                    v = inner.clone();
                }
                check_pattern(&v).map_err(bad)?;
                Ok(v)
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            tables: tables.to_vec(),
            operations,
            patterns,
        })
    }

    /// No condition at all: every record passes.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.operations.is_empty() && self.patterns.is_empty()
    }

    /// A text that changes whenever what passes may change (kept in stream checkpoints).
    pub fn fingerprint(&self) -> Option<String> {
        (!self.is_empty()).then(|| {
            serde_json::json!({"tables": self.tables, "operations": self.operations, "patterns": self.patterns})
                .to_string()
        })
    }

    /// Whether `rec` of `table` (its DynamoDB table name) goes on to the lake.
    pub fn passes(&self, rec: &ChangeRecord<'_>, table: &str) -> bool {
        if !self.tables.is_empty() && !self.tables.iter().any(|t| t == table) {
            return false;
        }
        let op = rec.operation.as_str();
        if !self.operations.is_empty() && !self.operations.iter().any(|o| o == op) {
            return false;
        }
        if self.patterns.is_empty() {
            return true;
        }
        let view = stream_view(rec, table);
        self.patterns.iter().any(|p| matches(p, &view))
    }
}

/// The record as a DynamoDB Streams record.
pub fn stream_view(rec: &ChangeRecord<'_>, table: &str) -> Value {
    let mut d = Map::new();
    d.insert("Keys".into(), item_json(&rec.keys));
    if let Some(i) = &rec.new_image {
        d.insert("NewImage".into(), item_json(i));
    }
    if let Some(i) = &rec.old_image {
        d.insert("OldImage".into(), item_json(i));
    }
    if let Some(s) = &rec.sequence_number {
        d.insert("SequenceNumber".into(), Value::from(s.as_ref()));
    }
    d.insert(
        "ApproximateCreationDateTime".into(),
        Value::from(rec.event_time_us.div_euclid(1_000_000)),
    );
    let mut r = Map::new();
    r.insert("eventName".into(), rec.operation.as_str().into());
    if let Some(id) = &rec.event_id {
        r.insert("eventID".into(), Value::from(id.as_ref()));
    }
    r.insert("eventSource".into(), "aws:dynamodb".into());
    r.insert("tableName".into(), table.into());
    if rec.ttl_delete {
        r.insert(
            "userIdentity".into(),
            serde_json::json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"}),
        );
    }
    r.insert("dynamodb".into(), Value::Object(d));
    Value::Object(r)
}

fn item_json(item: &Item<'_>) -> Value {
    Value::Object(
        item.0
            .iter()
            .map(|(k, v)| (k.to_string(), attr_json(v)))
            .collect(),
    )
}

fn attr_json(v: &AttrValue<'_>) -> Value {
    let strings = |xs: &Vec<std::borrow::Cow<'_, str>>| {
        Value::Array(xs.iter().map(|x| Value::from(x.as_ref())).collect())
    };
    let inner = match v {
        AttrValue::S(s) | AttrValue::N(s) | AttrValue::B(s) => Value::from(s.as_ref()),
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Null => Value::Bool(true),
        AttrValue::M(m) => item_json(m),
        AttrValue::L(l) => Value::Array(l.iter().map(attr_json).collect()),
        AttrValue::Ss(x) | AttrValue::Ns(x) | AttrValue::Bs(x) => strings(x),
    };
    let mut m = Map::new();
    m.insert(v.tag().into(), inner);
    Value::Object(m)
}

/// Checks a pattern's shape: objects of fields, `$or` lists of patterns, leaves that are
/// lists of values or matchers.
fn check_pattern(p: &Value) -> Result<(), String> {
    let Some(obj) = p.as_object() else {
        return Err("a pattern is a JSON object".into());
    };
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("$or", Value::Array(alts)) if !alts.is_empty() => {
                alts.iter().try_for_each(check_pattern)?;
            }
            ("$or", _) => return Err("`$or` takes a list of patterns".into()),
            (_, Value::Object(_)) => check_pattern(v).map_err(|e| format!("{k}: {e}"))?,
            (_, Value::Array(values)) if !values.is_empty() => {
                for m in values {
                    check_matcher(m).map_err(|e| format!("{k}: {e}"))?;
                }
            }
            _ => {
                return Err(format!(
                    "{k}: a field takes a nested pattern or a non-empty list of values"
                ))
            }
        }
    }
    Ok(())
}

fn check_matcher(m: &Value) -> Result<(), String> {
    let Some(obj) = m.as_object() else {
        return Ok(()); // a literal
    };
    let [(name, arg)] = obj.iter().collect::<Vec<_>>()[..] else {
        return Err(format!("a matcher is an object with one key: {m}"));
    };
    let ok = match name.as_str() {
        "prefix" | "suffix" | "equals-ignore-case" | "wildcard" => {
            arg.is_string()
                || (name == "prefix" || name == "suffix")
                    && arg.get("equals-ignore-case").is_some_and(Value::is_string)
        }
        "exists" => arg.is_boolean(),
        "anything-but" => match arg {
            Value::Object(_) => check_matcher(arg).is_ok(),
            _ => true,
        },
        "numeric" => numeric_ok(arg),
        _ => return Err(format!("unknown matcher `{name}`")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("bad argument of `{name}`: {arg}"))
    }
}

fn numeric_ok(arg: &Value) -> bool {
    let Some(a) = arg.as_array() else {
        return false;
    };
    !a.is_empty()
        && a.len() % 2 == 0
        && a.chunks(2).all(|c| {
            matches!(c[0].as_str(), Some("<" | "<=" | "=" | ">" | ">=")) && c[1].is_number()
        })
}

/// Whether `event` matches `pattern` (EventBridge semantics: every field of the pattern
/// matches; a leaf list matches when any of its values matches the field, or any element of a
/// field that is a list; `$or` matches when any alternative does).
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Some(obj) = pattern.as_object() else {
        return false;
    };
    obj.iter().all(|(k, p)| {
        if k == "$or" {
            return p
                .as_array()
                .is_some_and(|alts| alts.iter().any(|a| matches(a, event)));
        }
        let field = event.get(k);
        match p {
            // An absent field: only `exists: false` below it can match.
            Value::Object(_) => matches(p, field.unwrap_or(&Value::Null)),
            Value::Array(values) => values.iter().any(|m| leaf(m, field)),
            _ => false,
        }
    })
}

/// One leaf matcher against a field (absent: `None`).
fn leaf(m: &Value, field: Option<&Value>) -> bool {
    if let Some(exists) = m.get("exists").and_then(Value::as_bool) {
        let present = field.is_some_and(|f| !f.is_object());
        return present == exists;
    }
    let Some(field) = field else {
        return false;
    };
    if let Value::Array(items) = field {
        return items.iter().any(|x| one(m, x));
    }
    one(m, field)
}

fn one(m: &Value, v: &Value) -> bool {
    let Some(obj) = m.as_object() else {
        return m == v;
    };
    let Some((name, arg)) = obj.iter().next() else {
        return false;
    };
    let s = v.as_str();
    match name.as_str() {
        "prefix" => match (arg.as_str(), arg.get("equals-ignore-case"), s) {
            (Some(p), _, Some(s)) => s.starts_with(p),
            (None, Some(Value::String(p)), Some(s)) => {
                s.to_lowercase().starts_with(&p.to_lowercase())
            }
            _ => false,
        },
        "suffix" => match (arg.as_str(), arg.get("equals-ignore-case"), s) {
            (Some(p), _, Some(s)) => s.ends_with(p),
            (None, Some(Value::String(p)), Some(s)) => {
                s.to_lowercase().ends_with(&p.to_lowercase())
            }
            _ => false,
        },
        "equals-ignore-case" => {
            matches!((arg.as_str(), s), (Some(a), Some(s)) if a.to_lowercase() == s.to_lowercase())
        }
        "wildcard" => match (arg.as_str(), s) {
            (Some(w), Some(s)) => wildcard(w, s),
            _ => false,
        },
        "anything-but" => match arg {
            Value::Array(xs) => !xs.iter().any(|x| x == v),
            Value::Object(_) => (v.is_string() || v.is_number()) && !one(arg, v),
            x => x != v,
        },
        "numeric" => match (v.as_f64(), arg.as_array()) {
            (Some(x), Some(a)) => a.chunks(2).all(|c| {
                let n = c[1].as_f64().unwrap_or(f64::NAN);
                match c[0].as_str() {
                    Some("<") => x < n,
                    Some("<=") => x <= n,
                    Some("=") => x == n,
                    Some(">") => x > n,
                    Some(">=") => x >= n,
                    _ => false,
                }
            }),
            _ => false,
        },
        _ => false,
    }
}

/// `*` matches any run of characters (none included); everything else is literal.
fn wildcard(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().expect("split gives one part at least");
    let Some(mut left) = s.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return left.is_empty();
    };
    for part in middle {
        match left.find(part) {
            Some(i) => left = &left[i + part.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last)
}

#[cfg(test)]
mod tests;
