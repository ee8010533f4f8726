//! Column and table names that Athena, Glue and Redshift accept (FORMATS.md 2): lowercase
//! `[a-z0-9_]`, starting with a letter, at most 127 bytes, never a reserved word.

/// Longest column name Athena and Glue accept.
pub const MAX_NAME_BYTES: usize = 127;

/// Reserved words of Athena (DDL and DML) and Redshift that we never use as a bare name, plus the
/// partition keys of our layouts (Athena rejects a column named like a partition key).
const RESERVED: &[&str] = &[
    "all",
    "alter",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "authorization",
    "between",
    "bigint",
    "binary",
    "boolean",
    "both",
    "by",
    "case",
    "cast",
    "char",
    "check",
    "column",
    "commit",
    "constraint",
    "create",
    "cross",
    "cube",
    "current",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "cursor",
    "database",
    "date",
    "day",
    "deallocate",
    "decimal",
    "default",
    "delete",
    "desc",
    "describe",
    "distinct",
    "div",
    "do",
    "double",
    "drop",
    "dt",
    "else",
    "end",
    "escape",
    "except",
    "exchange",
    "execute",
    "exists",
    "extended",
    "external",
    "extract",
    "false",
    "fetch",
    "float",
    "following",
    "for",
    "foreign",
    "from",
    "full",
    "function",
    "grant",
    "group",
    "grouping",
    "having",
    "hour",
    "hr",
    "if",
    "import",
    "in",
    "inner",
    "insert",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "join",
    "lateral",
    "leading",
    "left",
    "less",
    "like",
    "limit",
    "local",
    "localtime",
    "localtimestamp",
    "macro",
    "map",
    "minute",
    "month",
    "more",
    "natural",
    "new",
    "none",
    "not",
    "null",
    "numeric",
    "of",
    "off",
    "offset",
    "old",
    "on",
    "only",
    "open",
    "or",
    "order",
    "out",
    "outer",
    "over",
    "partition",
    "percent",
    "preceding",
    "precision",
    "prepare",
    "preserve",
    "primary",
    "procedure",
    "range",
    "reads",
    "recursive",
    "reduce",
    "references",
    "regexp",
    "revoke",
    "right",
    "rlike",
    "rollback",
    "rollup",
    "row",
    "rows",
    "select",
    "session_user",
    "set",
    "similar",
    "smallint",
    "some",
    "start",
    "table",
    "tablesample",
    "tag",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "transform",
    "trigger",
    "true",
    "truncate",
    "unbounded",
    "union",
    "unique",
    "uniquejoin",
    "unnest",
    "update",
    "user",
    "using",
    "utc_timestamp",
    "values",
    "varchar",
    "verbose",
    "views",
    "when",
    "where",
    "window",
    "with",
    "year",
];

/// Converts an attribute name to a column-name fragment: camelCase to snake_case, lowercase,
/// anything outside `[a-z0-9_]` to `_`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            let boundary = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(|p| p.is_ascii_uppercase())
                    && next.is_some_and(|n| n.is_ascii_lowercase()));
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// Makes a fragment a valid name: starts with a letter, at most 127 bytes (a long name keeps a
/// hash of the original so distinct long names stay distinct), not a reserved word.
pub fn valid_name(fragment: &str) -> String {
    let mut name = if fragment.starts_with(|c: char| c.is_ascii_lowercase()) {
        fragment.to_string()
    } else {
        format!("col_{fragment}")
    };
    if name.len() > MAX_NAME_BYTES {
        let hash = crate::store::short_hash(fragment.as_bytes(), 4);
        name.truncate(MAX_NAME_BYTES - 9);
        name.push('_');
        name.push_str(&hash);
    }
    if RESERVED.binary_search(&name.as_str()).is_ok() {
        name.push('_');
    }
    name
}

/// The column name for an attribute path (`["InvoiceDoc","address","state"]` gives
/// `invoice_doc_address_state`), with an optional prefix (`old`).
pub fn column_name(prefix: Option<&str>, path: &[impl AsRef<str>]) -> String {
    let mut fragment = String::new();
    for part in prefix.into_iter().chain(path.iter().map(AsRef::as_ref)) {
        if !fragment.is_empty() {
            fragment.push('_');
        }
        fragment.push_str(&snake_case(part));
    }
    valid_name(&fragment)
}

/// The first of `base`, `base_2`, `base_3`... that `taken` does not hold.
pub fn unique_name(base: String, taken: impl Fn(&str) -> bool) -> String {
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let mut b = base.clone();
            b.truncate(MAX_NAME_BYTES - suffix.len());
            b + &suffix
        })
        .find(|c| !taken(c))
        .expect("an unused suffix exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_list_is_sorted() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names() {
        assert_eq!(column_name(None, &["InvoiceNumber"]), "invoice_number");
        assert_eq!(
            column_name(None, &["InvoiceDoc", "address", "state"]),
            "invoice_doc_address_state"
        );
        assert_eq!(column_name(None, &["HTTPServer"]), "http_server");
        assert_eq!(column_name(Some("old"), &["Amount"]), "old_amount");
        assert_eq!(column_name(None, &["order"]), "order_");
        assert_eq!(column_name(None, &["year"]), "year_");
        assert_eq!(column_name(None, &["_id"]), "col__id");
        assert_eq!(column_name(None, &["9lives"]), "col_9lives");
        assert_eq!(column_name(None, &["a-b.c d"]), "a_b_c_d");
        assert_eq!(column_name(None, &["données"]), "donn_es");
        let long = "x".repeat(300);
        let n = column_name(None, &[long.as_str()]);
        assert_eq!(n.len(), MAX_NAME_BYTES);
        assert_ne!(n, column_name(None, &[format!("{long}y").as_str()]));
    }

    #[test]
    fn unique_names() {
        let taken = ["a", "a_2"];
        assert_eq!(unique_name("a".into(), |c| taken.contains(&c)), "a_3");
        assert_eq!(unique_name("b".into(), |c| taken.contains(&c)), "b");
    }
}
