//! Quotas: the `/zookeeper/quota/<path>/zookeeper_limits` and `.../zookeeper_stats` nodes,
//! their text format (`StatsTrack`), and the set of quota roots (`PathTrie`).

use super::path::java_blank;
use std::collections::{BTreeMap, BTreeSet};

/// `Quotas.quotaZookeeper`.
pub const QUOTA_ROOT: &str = "/zookeeper/quota";
/// `Quotas.limitNode`.
pub const LIMIT_NODE: &str = "zookeeper_limits";
/// `Quotas.statNode`.
pub const STAT_NODE: &str = "zookeeper_stats";

/// `Quotas.limitPath`.
pub fn limit_path(path: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{LIMIT_NODE}")
}

/// `Quotas.statPath`.
pub fn stat_path(path: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{STAT_NODE}")
}

const COUNT: &str = "count";
const BYTES: &str = "bytes";
const COUNT_HARD_LIMIT: &str = "countHardLimit";
const BYTE_HARD_LIMIT: &str = "byteHardLimit";

/// `StatsTrack`: "key=value" pairs separated by ',' or ';'. Absent values read as -1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsTrack {
    values: BTreeMap<String, i64>,
}

impl StatsTrack {
    /// Parses node data. ZooKeeper throws on a pair without a value or a non-numeric value;
    /// here such a pair is skipped (and logged), so a client writing garbage into a quota node
    /// cannot stop the server.
    pub fn parse(data: &[u8]) -> StatsTrack {
        let text = String::from_utf8_lossy(data);
        let mut values = BTreeMap::new();
        if text.is_empty() {
            return StatsTrack { values };
        }
        // Java splits on "[,;]+": runs of separators count as one, so empty pieces carry
        // nothing (a leading one makes ZooKeeper throw).
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv: Vec<&str> = pair.split('=').collect();
            while kv.last() == Some(&"") {
                kv.pop();
            }
            let parsed = match kv.as_slice() {
                [key, "", ..] => Some((*key, -1)),
                [key, value, ..] => value.parse::<i64>().ok().map(|v| (*key, v)),
                _ => None,
            };
            match parsed {
                Some((key, value)) => {
                    values.insert(key.to_owned(), value);
                }
                None => log::warn!("Ignoring malformed quota pair {pair:?} in {text:?}"),
            }
        }
        StatsTrack { values }
    }

    fn get(&self, key: &str) -> i64 {
        self.values.get(key).copied().unwrap_or(-1)
    }

    pub fn count(&self) -> i64 {
        self.get(COUNT)
    }

    pub fn bytes(&self) -> i64 {
        self.get(BYTES)
    }

    pub fn count_hard_limit(&self) -> i64 {
        self.get(COUNT_HARD_LIMIT)
    }

    pub fn byte_hard_limit(&self) -> i64 {
        self.get(BYTE_HARD_LIMIT)
    }

    pub fn set_count(&mut self, count: i64) {
        self.values.insert(COUNT.to_owned(), count);
    }

    pub fn set_bytes(&mut self, bytes: i64) {
        self.values.insert(BYTES.to_owned(), bytes);
    }

    pub fn set_count_hard_limit(&mut self, limit: i64) {
        self.values.insert(COUNT_HARD_LIMIT.to_owned(), limit);
    }

    pub fn set_byte_hard_limit(&mut self, limit: i64) {
        self.values.insert(BYTE_HARD_LIMIT.to_owned(), limit);
    }

    /// `StatsTrack.toString`: "count=N,bytes=M", then, if other keys exist, "=" and
    /// ";key=value" for each in sorted order (the extra "=" keeps pre-3.4.4 parsers working).
    pub fn to_text(&self) -> String {
        let mut out = format!("{COUNT}={},{BYTES}={}", self.count(), self.bytes());
        let mut extras = self
            .values
            .iter()
            .filter(|(k, _)| k.as_str() != COUNT && k.as_str() != BYTES)
            .peekable();
        if extras.peek().is_some() {
            out.push('=');
            for (k, v) in extras {
                out.push(';');
                out.push_str(k);
                out.push('=');
                out.push_str(&v.to_string());
            }
        }
        out
    }
}

/// The quota roots (`PathTrie` with the "property" flag): a path's quota is its deepest
/// ancestor-or-self in the set. Paths are kept as ZooKeeper's trie normalizes them: split on
/// '/', blank components (all characters <= U+0020) dropped.
#[derive(Clone, Debug, Default)]
pub struct QuotaPaths {
    roots: BTreeSet<String>,
}

impl QuotaPaths {
    /// `addPath`. ZooKeeper throws on "", which only a hand-made quota node can cause.
    pub fn add(&mut self, path: &str) {
        if path.is_empty() {
            log::warn!("Ignoring a quota on the empty path");
            return;
        }
        self.roots.insert(normalize(path));
    }

    /// `deletePath`.
    pub fn delete(&mut self, path: &str) {
        if !path.is_empty() {
            self.roots.remove(&normalize(path));
        }
    }

    pub fn clear(&mut self) {
        self.roots.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// `DataTree.getMaxPrefixWithQuota`: the deepest quota root covering `path`; never the
    /// root itself.
    pub fn max_prefix(&self, path: &str) -> Option<String> {
        if self.roots.is_empty() {
            return None;
        }
        let mut prefix = String::with_capacity(path.len());
        let mut best = None;
        for component in components(path) {
            prefix.push('/');
            prefix.push_str(component);
            if self.roots.contains(&prefix) {
                best = Some(prefix.clone());
            }
        }
        best
    }

    /// The roots, sorted (for tests and diagnostics).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.roots.iter().map(String::as_str)
    }
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !java_blank(c))
}

fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in components(path) {
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_track_round_trips_zookeeper_text() {
        let s = StatsTrack::parse(b"count=4,bytes=5=;byteHardLimit=10;countHardLimit=3");
        assert_eq!(
            (
                s.count(),
                s.bytes(),
                s.count_hard_limit(),
                s.byte_hard_limit()
            ),
            (4, 5, 3, 10)
        );
        assert_eq!(
            s.to_text(),
            "count=4,bytes=5=;byteHardLimit=10;countHardLimit=3"
        );
        let mut t = StatsTrack::default();
        t.set_count(1);
        t.set_bytes(7);
        assert_eq!(t.to_text(), "count=1,bytes=7");
        assert_eq!(StatsTrack::parse(b"").to_text(), "count=-1,bytes=-1");
        // ';' and ',' both separate, runs of them too; "k==v" reads as -1 (Java's split
        // gives an empty second piece); "k=" has no value and is skipped.
        let s = StatsTrack::parse(b",count=7,,;bytes=9;");
        assert_eq!((s.count(), s.bytes()), (7, 9));
        let s = StatsTrack::parse(b"count==5;bytes=+3");
        assert_eq!((s.count(), s.bytes()), (-1, 3));
        let s = StatsTrack::parse(b"count=;bytes=2");
        assert_eq!((s.count(), s.bytes()), (-1, 2));
        // Malformed pairs are skipped instead of failing.
        let s = StatsTrack::parse(b"count=x,bytes=2,junk");
        assert_eq!((s.count(), s.bytes()), (-1, 2));
    }

    #[test]
    fn quota_paths_find_the_deepest_root() {
        let mut q = QuotaPaths::default();
        assert_eq!(q.max_prefix("/a/b"), None);
        q.add("/a");
        q.add("/a/b/c");
        assert_eq!(q.max_prefix("/a"), Some("/a".to_owned()));
        assert_eq!(q.max_prefix("/a/b"), Some("/a".to_owned()));
        assert_eq!(q.max_prefix("/a/b/c/d"), Some("/a/b/c".to_owned()));
        assert_eq!(q.max_prefix("/ab"), None);
        assert_eq!(q.max_prefix("/"), None);
        q.delete("/a");
        assert_eq!(q.max_prefix("/a/b"), None);
        assert_eq!(q.max_prefix("/a/b/c"), Some("/a/b/c".to_owned()));
        // Blank components are dropped, as the trie does.
        q.add("/x/ /y");
        assert_eq!(q.max_prefix("/x/y/z"), Some("/x/y".to_owned()));
        q.add("");
        assert_eq!(q.iter().count(), 2);
    }

    #[test]
    fn quota_node_paths() {
        assert_eq!(limit_path("/a"), "/zookeeper/quota/a/zookeeper_limits");
        assert_eq!(stat_path("/a/b"), "/zookeeper/quota/a/b/zookeeper_stats");
    }
}
