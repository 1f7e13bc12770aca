//! Watches: ZooKeeper's `WatchManager` (3.9), one instance for data watches and one for child
//! watches. A connection may hold several modes on one path (STANDARD, PERSISTENT,
//! PERSISTENT_RECURSIVE); firing removes only the STANDARD one.
//!
//! Determinism: watchers of a path are kept in a `BTreeMap`, triggered watchers are collected
//! in a `BTreeSet`, and every report is sorted, so no hash order reaches an output.

use super::CnxnId;
use crate::jute::data::Acl;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// What a client asked to watch, as the tree's `add_watch` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// getData and exists watches (one-shot, on the data watch manager).
    Data,
    /// getChildren watches (one-shot, on the child watch manager).
    Child,
    /// addWatch PERSISTENT: both managers, never removed by firing.
    Persistent,
    /// addWatch PERSISTENT_RECURSIVE: the data manager only; fires for descendants too.
    PersistentRecursive,
}

/// `WatcherMode`, one bit each in a path's mode set (`WatchStats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatcherMode {
    Standard,
    Persistent,
    PersistentRecursive,
}

impl WatcherMode {
    fn bit(self) -> u8 {
        match self {
            WatcherMode::Standard => 1,
            WatcherMode::Persistent => 2,
            WatcherMode::PersistentRecursive => 4,
        }
    }
}

/// A notification for one connection. Its state is always SyncConnected; `zxid` is the
/// transaction that fired it, or -1 for events setWatches sends (ZooKeeper's `NO_ZXID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub cnxn: CnxnId,
    pub type_: i32,
    pub path: String,
    pub zxid: i64,
}

/// One watch manager. Each (path, connection) pair holds a non-empty set of modes.
#[derive(Default)]
pub struct WatchManager {
    /// Path -> connection -> mode bits (`watchTable` with `WatchStats` folded in).
    table: HashMap<Arc<str>, BTreeMap<CnxnId, u8>>,
    /// Connection -> watched paths (`watch2Paths`). Like ZooKeeper, a connection stays here
    /// with an empty set after its last standard watch fires, until it closes or removes a
    /// watch explicitly; the "connections watching" count shows it.
    by_cnxn: HashMap<CnxnId, HashSet<Arc<str>>>,
    /// Pairs holding PERSISTENT_RECURSIVE: while 0, triggers look at the path only.
    recursive: usize,
}

impl WatchManager {
    pub fn new() -> WatchManager {
        WatchManager::default()
    }

    /// `addWatch`: true when the mode is new for this pair.
    pub fn add(&mut self, path: &str, cnxn: CnxnId, mode: WatcherMode) -> bool {
        let key: Arc<str> = match self.table.get_key_value(path) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(path),
        };
        let modes = self
            .table
            .entry(Arc::clone(&key))
            .or_default()
            .entry(cnxn)
            .or_insert(0);
        let old = *modes;
        *modes |= mode.bit();
        self.by_cnxn.entry(cnxn).or_default().insert(key);
        if old == *modes {
            return false;
        }
        if mode == WatcherMode::PersistentRecursive {
            self.recursive += 1;
        }
        true
    }

    /// `removeWatcher(watcher)`: the connection is gone.
    pub fn remove_cnxn(&mut self, cnxn: CnxnId) {
        let Some(paths) = self.by_cnxn.remove(&cnxn) else {
            return;
        };
        for path in paths {
            let Some(watchers) = self.table.get_mut(&path) else {
                continue;
            };
            if let Some(modes) = watchers.remove(&cnxn) {
                if modes & WatcherMode::PersistentRecursive.bit() != 0 {
                    self.recursive -= 1;
                }
            }
            if watchers.is_empty() {
                self.table.remove(&path);
            }
        }
    }

    /// `containsWatcher`: does the pair hold `mode` (any mode when `None`)?
    pub fn contains(&self, path: &str, cnxn: CnxnId, mode: Option<WatcherMode>) -> bool {
        let modes = self.modes(path, cnxn);
        modes != 0 && mode.is_none_or(|m| modes & m.bit() != 0)
    }

    /// `removeWatcher(path, watcher, mode)`: removes one mode (all when `None`); true when
    /// something was removed.
    pub fn remove(&mut self, path: &str, cnxn: CnxnId, mode: Option<WatcherMode>) -> bool {
        if !self.by_cnxn.contains_key(&cnxn) || !self.table.contains_key(path) {
            return false;
        }
        let old = self.modes(path, cnxn);
        let new = mode.map_or(0, |m| old & !m.bit());
        if old == 0 {
            return false;
        }
        if new == 0 {
            self.unwatch(path, cnxn);
        } else if let Some(modes) = self.table.get_mut(path).and_then(|w| w.get_mut(&cnxn)) {
            *modes = new;
        }
        let rec = WatcherMode::PersistentRecursive.bit();
        if old & rec != 0 && new & rec == 0 {
            self.recursive -= 1;
        }
        old != new
    }

    /// Drops the pair entirely, and the connection's entry once it has no path left.
    fn unwatch(&mut self, path: &str, cnxn: CnxnId) {
        if let Some(paths) = self.by_cnxn.get_mut(&cnxn) {
            paths.remove(path);
            if paths.is_empty() {
                self.by_cnxn.remove(&cnxn);
            }
        }
        if let Some(watchers) = self.table.get_mut(path) {
            watchers.remove(&cnxn);
            if watchers.is_empty() {
                self.table.remove(path);
            }
        }
    }

    fn modes(&self, path: &str, cnxn: CnxnId) -> u8 {
        self.table
            .get(path)
            .and_then(|w| w.get(&cnxn))
            .copied()
            .unwrap_or(0)
    }

    /// `triggerWatch`: the connections to notify for an event on `path`: every watcher of the
    /// path itself (its STANDARD mode is consumed), plus PERSISTENT_RECURSIVE watchers of each
    /// ancestor. Returned in connection order; each connection once.
    pub fn trigger(&mut self, path: &str) -> BTreeSet<CnxnId> {
        let mut fired = BTreeSet::new();
        self.fire_exact(path, &mut fired);
        if self.recursive > 0 {
            let mut ancestor = path;
            while ancestor != "/" && !ancestor.is_empty() {
                ancestor = super::path::parent(ancestor);
                if let Some(watchers) = self.table.get(ancestor) {
                    let rec = WatcherMode::PersistentRecursive.bit();
                    fired.extend(
                        watchers
                            .iter()
                            .filter(|(_, m)| **m & rec != 0)
                            .map(|(c, _)| *c),
                    );
                }
            }
        }
        fired
    }

    fn fire_exact(&mut self, path: &str, fired: &mut BTreeSet<CnxnId>) {
        let Some(watchers) = self.table.get_mut(path) else {
            return;
        };
        let std_bit = WatcherMode::Standard.bit();
        let mut consumed = Vec::new();
        for (cnxn, modes) in watchers.iter_mut() {
            fired.insert(*cnxn);
            *modes &= !std_bit;
            if *modes == 0 {
                consumed.push(*cnxn);
            }
        }
        for cnxn in &consumed {
            watchers.remove(cnxn);
            // The connection keeps its (possibly empty) entry, as ZooKeeper's watch2Paths does.
            if let Some(paths) = self.by_cnxn.get_mut(cnxn) {
                paths.remove(path);
            }
        }
        if watchers.is_empty() {
            self.table.remove(path);
        }
    }

    /// `size()`: (path, connection) pairs; a pair with several modes counts once.
    pub fn len(&self) -> usize {
        self.table.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Connections in `watch2Paths` (the "N connections watching" of wchs).
    pub fn connection_count(&self) -> usize {
        self.by_cnxn.len()
    }

    /// Paths with at least one watcher (the "M paths" of wchs).
    pub fn path_count(&self) -> usize {
        self.table.len()
    }

    /// Watches per connection, for wchc: connections ascending, paths sorted. Connections
    /// whose standard watches all fired appear with no path, as in ZooKeeper.
    pub fn by_connection(&self) -> Vec<(CnxnId, Vec<String>)> {
        let mut out: Vec<(CnxnId, Vec<String>)> = self
            .by_cnxn
            .iter()
            .map(|(c, paths)| {
                let mut list: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
                list.sort_unstable();
                (*c, list)
            })
            .collect();
        out.sort_unstable_by_key(|(c, _)| *c);
        out
    }

    /// Watchers per path, for wchp: paths sorted, connections ascending.
    pub fn by_path(&self) -> Vec<(String, Vec<CnxnId>)> {
        let mut out: Vec<(String, Vec<CnxnId>)> = self
            .table
            .iter()
            .map(|(p, w)| (p.to_string(), w.keys().copied().collect()))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The paths one connection watches, sorted.
    pub fn paths_of(&self, cnxn: CnxnId) -> Vec<String> {
        let mut list: Vec<String> = self
            .by_cnxn
            .get(&cnxn)
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        list.sort_unstable();
        list
    }
}

/// Pushes one event per fired connection, skipping `suppress`ed ones and those `can_read`
/// refuses for the node's ACL (ZooKeeper checks READ on every watch delivery: CVE-2024-23944).
#[allow(clippy::too_many_arguments)]
pub(super) fn deliver(
    fired: &BTreeSet<CnxnId>,
    suppress: Option<&BTreeSet<CnxnId>>,
    type_: i32,
    path: &str,
    zxid: i64,
    acl: &[Acl],
    can_read: &dyn Fn(CnxnId, &[Acl]) -> bool,
    events: &mut Vec<WatchEvent>,
) {
    for cnxn in fired {
        if suppress.is_some_and(|s| s.contains(cnxn)) || !can_read(*cnxn, acl) {
            continue;
        }
        events.push(WatchEvent {
            cnxn: *cnxn,
            type_,
            path: path.to_owned(),
            zxid,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::proto::event_type;

    #[test]
    fn standard_watches_fire_once_persistent_stay() {
        let mut m = WatchManager::new();
        assert!(m.add("/a", 1, WatcherMode::Standard));
        assert!(!m.add("/a", 1, WatcherMode::Standard));
        assert!(m.add("/a", 2, WatcherMode::Persistent));
        assert!(m.add("/a", 2, WatcherMode::Standard));
        assert_eq!(m.len(), 2);
        assert_eq!(m.trigger("/a").into_iter().collect::<Vec<_>>(), vec![1, 2]);
        // 1's only watch is gone; 2 keeps its persistent mode.
        assert_eq!(m.trigger("/a").into_iter().collect::<Vec<_>>(), vec![2]);
        assert!(!m.contains("/a", 2, Some(WatcherMode::Standard)));
        assert!(m.contains("/a", 2, Some(WatcherMode::Persistent)));
        assert!(!m.contains("/a", 1, None));
        // Connection 1 still counts as watching (an empty entry), as in ZooKeeper.
        assert_eq!((m.connection_count(), m.path_count(), m.len()), (2, 1, 1));
        m.remove_cnxn(1);
        assert_eq!(m.connection_count(), 1);
    }

    #[test]
    fn recursive_watches_fire_for_descendants_only_when_recursive() {
        let mut m = WatchManager::new();
        m.add("/", 1, WatcherMode::PersistentRecursive);
        m.add("/a", 2, WatcherMode::Persistent);
        m.add("/a", 3, WatcherMode::Standard);
        m.add("/a/b", 4, WatcherMode::Standard);
        let fired: Vec<_> = m.trigger("/a/b").into_iter().collect();
        assert_eq!(fired, vec![1, 4]);
        let fired: Vec<_> = m.trigger("/a/b/c").into_iter().collect();
        assert_eq!(fired, vec![1]);
        // After removing the recursive watch, ancestors are no longer consulted.
        assert!(m.remove("/", 1, Some(WatcherMode::PersistentRecursive)));
        assert!(m.trigger("/a/b/c").is_empty());
        assert_eq!(m.recursive, 0);
    }

    #[test]
    fn removal_by_mode_and_any() {
        let mut m = WatchManager::new();
        m.add("/a", 1, WatcherMode::Standard);
        m.add("/a", 1, WatcherMode::PersistentRecursive);
        assert!(m.remove("/a", 1, Some(WatcherMode::Standard)));
        assert!(!m.remove("/a", 1, Some(WatcherMode::Standard)));
        assert!(m.contains("/a", 1, None));
        assert_eq!(m.recursive, 1);
        assert!(m.remove("/a", 1, None));
        assert_eq!(m.recursive, 0);
        assert_eq!((m.connection_count(), m.path_count(), m.len()), (0, 0, 0));
        assert!(!m.remove("/a", 1, None));
        assert!(!m.remove("/b", 9, None));
    }

    #[test]
    fn reports_are_sorted() {
        let mut m = WatchManager::new();
        for (p, c) in [("/b", 3), ("/a", 2), ("/b", 1), ("/c", 2)] {
            m.add(p, c, WatcherMode::Standard);
        }
        assert_eq!(
            m.by_connection(),
            vec![
                (1, vec!["/b".to_owned()]),
                (2, vec!["/a".to_owned(), "/c".to_owned()]),
                (3, vec!["/b".to_owned()])
            ]
        );
        assert_eq!(
            m.by_path(),
            vec![
                ("/a".to_owned(), vec![2]),
                ("/b".to_owned(), vec![1, 3]),
                ("/c".to_owned(), vec![2])
            ]
        );
        assert_eq!(m.paths_of(2), vec!["/a".to_owned(), "/c".to_owned()]);
    }

    #[test]
    fn delivery_filters_suppressed_and_unreadable() {
        let fired: BTreeSet<CnxnId> = [1, 2, 3].into_iter().collect();
        let suppress: BTreeSet<CnxnId> = [2].into_iter().collect();
        let mut events = Vec::new();
        deliver(
            &fired,
            Some(&suppress),
            event_type::NODE_DELETED,
            "/x",
            7,
            &[],
            &|c, _| c != 3,
            &mut events,
        );
        assert_eq!(
            events,
            vec![WatchEvent {
                cnxn: 1,
                type_: event_type::NODE_DELETED,
                path: "/x".into(),
                zxid: 7
            }]
        );
    }
}
