//! Shard lineage: a child shard is read only after its parents are drained to their end, for
//! splits (one parent) and merges (a parent and an adjacent parent) alike.

use std::collections::{BTreeMap, HashSet};

use super::Shard;

/// Shards that may be read now: not started, not done, and every parent that is still listed is
/// done. (A parent no longer listed has expired from the stream: nothing is left to read there.)
pub fn readable<'a>(
    shards: &'a [Shard],
    done: &HashSet<String>,
    started: &HashSet<String>,
) -> Vec<&'a Shard> {
    let listed: BTreeMap<&str, &Shard> = shards.iter().map(|s| (s.id.as_str(), s)).collect();
    shards
        .iter()
        .filter(|s| !done.contains(&s.id) && !started.contains(&s.id))
        .filter(|s| {
            [&s.parent, &s.adjacent_parent]
                .into_iter()
                .flatten()
                .all(|p| !listed.contains_key(p.as_str()) || done.contains(p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>) -> Shard {
        Shard {
            id: id.into(),
            parent: parent.map(Into::into),
            adjacent_parent: adjacent.map(Into::into),
        }
    }

    fn ids(v: Vec<&Shard>) -> Vec<&str> {
        v.into_iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn children_wait_for_parents() {
        // s0 split into s1 and s2; s1 and s2 merged into s3; p is an expired parent of s4.
        let shards = vec![
            shard("s0", None, None),
            shard("s1", Some("s0"), None),
            shard("s2", Some("s0"), None),
            shard("s3", Some("s1"), Some("s2")),
            shard("s4", Some("p"), None),
        ];
        let mut done = HashSet::new();
        let started = HashSet::new();
        assert_eq!(ids(readable(&shards, &done, &started)), ["s0", "s4"]);
        done.insert("s0".to_string());
        assert_eq!(ids(readable(&shards, &done, &started)), ["s1", "s2", "s4"]);
        done.insert("s1".to_string());
        assert_eq!(ids(readable(&shards, &done, &started)), ["s2", "s4"]);
        done.insert("s2".to_string());
        let started: HashSet<String> = ["s4".to_string()].into();
        assert_eq!(ids(readable(&shards, &done, &started)), ["s3"]);
    }
}
