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

/// The JSON body of a manifest listing `files` (URL, length). Manifests are stored at
/// `{state_prefix}/manifests/{table}/manifest-{hash}.json`, named by the objects they list.
pub fn redshift(files: &[(String, u64)]) -> Vec<u8> {
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
    serde_json::to_vec_pretty(&manifest).expect("manifests serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_shape() {
        let body = redshift(&[("s3://b/l/orders/a.parquet".into(), 12)]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["entries"][0]["url"], "s3://b/l/orders/a.parquet");
        assert_eq!(v["entries"][0]["mandatory"], true);
        assert_eq!(v["entries"][0]["meta"]["content_length"], 12);
    }
}
