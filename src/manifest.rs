//! Redshift COPY manifests: one per table for each group of files flushed together (the whole
//! end-of-input flush of a batch run, or each flush of the consumer), stored outside the table
//! folders so Athena never reads them. Every data file appears in exactly one manifest, with its
//! length (`meta.content_length`, which COPY from Parquet requires).

use serde::Serialize;

#[derive(Serialize)]
struct Manifest<'a> {
    entries: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    url: &'a str,
    mandatory: bool,
    meta: Meta,
}

#[derive(Serialize)]
struct Meta {
    content_length: u64,
}

/// The manifest's relative path (`{state_prefix}/manifests/{table}/manifest-{hash}.json`, named by
/// its content) and its JSON body.
pub fn redshift(state_prefix: &str, table: &str, files: &[(String, u64)]) -> (String, Vec<u8>) {
    let manifest = Manifest {
        entries: files
            .iter()
            .map(|(url, len)| Entry {
                url,
                mandatory: true,
                meta: Meta {
                    content_length: *len,
                },
            })
            .collect(),
    };
    let body = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
    let hash = crate::store::short_hash(&body, 8);
    (
        format!("{state_prefix}/manifests/{table}/manifest-{hash}.json"),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_shape() {
        let (path, body) = redshift(
            "_ddb_lake",
            "orders",
            &[("s3://b/l/orders/a.parquet".into(), 12)],
        );
        assert!(
            path.starts_with("_ddb_lake/manifests/orders/manifest-") && path.ends_with(".json")
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["entries"][0]["url"], "s3://b/l/orders/a.parquet");
        assert_eq!(v["entries"][0]["mandatory"], true);
        assert_eq!(v["entries"][0]["meta"]["content_length"], 12);
    }
}
