//! The data tree's structural invariants, checked through its public API only.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use zabd::tree::node::{self, CONTAINER_OWNER};
use zabd::tree::{DataNode, DataTree, EphemeralType};

/// The root's key in the tree ("" in walks).
pub fn key(walk_path: &str) -> &str {
    if walk_path.is_empty() {
        "/"
    } else {
        walk_path
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Every node reachable from the root, by key ("/" for the root), after checking:
/// - no node without a parent: the walk from the root reaches every node the tree holds;
/// - every child a node lists exists, and each node's parent lists it;
/// - each stat's numChildren is the length of the children list, dataLength the data's;
/// - the incremental digest equals the digest recomputed from every node;
/// - the ephemeral index lists exactly the nodes whose owner is a session, under that owner;
/// - the container and TTL indexes list only nodes of that kind;
/// - with `strict` (trees built by transactions, not loaded from arbitrary snapshots):
///   ephemeral nodes have no children, czxid <= mzxid, czxid <= pzxid, and no zxid is beyond
///   the last processed one.
pub fn check_tree(tree: &DataTree, strict: bool) -> BTreeMap<String, DataNode> {
    let mut nodes: BTreeMap<String, DataNode> = BTreeMap::new();
    tree.for_each_depth_first(|p, n| {
        let fresh = nodes.insert(key(p).to_owned(), n.clone()).is_none();
        assert!(fresh, "{p:?} visited twice");
    });
    assert_eq!(
        nodes.len() + 1,
        tree.node_count(),
        "nodes unreachable from the root: the tree holds {} but the walk found {}",
        tree.node_count() - 1,
        nodes.len()
    );
    let last = tree.last_processed_zxid();
    let extended = tree.extended_types();
    let mut digest = 0i64;
    for (path, n) in &nodes {
        digest = digest.wrapping_add(node::digest(path, n));
        for child in n.children.iter() {
            let child_path = join(path, child);
            assert!(
                tree.node(&child_path).is_some(),
                "{path} lists child {child:?} but {child_path} does not exist"
            );
        }
        if path != "/" {
            let p = parent(path);
            let name = &path[path.rfind('/').unwrap() + 1..];
            let parent_node = tree
                .node(p)
                .unwrap_or_else(|| panic!("{path} has no parent {p}"));
            assert!(
                parent_node.children.contains(name),
                "{p} does not list its child {name}"
            );
        }
        let stat = tree.stat(path).expect("walked nodes have a stat");
        assert_eq!(
            stat.num_children as usize,
            n.children.len(),
            "{path} numChildren"
        );
        assert_eq!(stat.data_length as usize, n.data_len(), "{path} dataLength");
        let s = &n.stat;
        if strict {
            assert!(
                s.czxid <= s.mzxid,
                "{path}: czxid {} > mzxid {}",
                s.czxid,
                s.mzxid
            );
            assert!(
                s.czxid <= s.pzxid,
                "{path}: czxid {} > pzxid {}",
                s.czxid,
                s.pzxid
            );
            assert!(
                s.mzxid <= last && s.pzxid <= last,
                "{path}: a zxid beyond the last processed 0x{last:x}: {s:?}"
            );
        }
        // The root is never indexed, whatever its owner (ZooKeeper's DataTree.deserialize
        // indexes only nodes with a parent).
        let owner_kind = if path == "/" {
            EphemeralType::Void
        } else {
            EphemeralType::of(s.ephemeral_owner, extended)
        };
        match owner_kind {
            EphemeralType::Normal => {
                assert!(
                    tree.ephemerals(s.ephemeral_owner).contains(path),
                    "ephemeral {path} missing from its session's index"
                );
                if strict {
                    assert!(n.children.is_empty(), "ephemeral {path} has children");
                }
            }
            EphemeralType::Container => {
                assert!(
                    tree.containers().contains(path),
                    "container {path} not indexed"
                );
            }
            EphemeralType::Ttl => {
                assert!(tree.ttls().contains(path), "TTL node {path} not indexed");
            }
            EphemeralType::Void => {}
        }
    }
    assert_eq!(tree.digest(), digest, "the incremental digest drifted");
    let mut indexed = BTreeSet::new();
    for (session, paths) in tree.ephemerals_by_session() {
        for p in paths {
            let n = nodes
                .get(p)
                .unwrap_or_else(|| panic!("session 0x{session:x} lists missing ephemeral {p}"));
            assert_eq!(
                n.stat.ephemeral_owner, session,
                "{p} indexed under another session"
            );
            assert!(indexed.insert(p.to_owned()), "{p} indexed twice");
        }
    }
    assert_eq!(indexed.len(), tree.ephemeral_count());
    for p in tree.containers() {
        let n = nodes
            .get(&p)
            .unwrap_or_else(|| panic!("missing container {p} indexed"));
        assert_eq!(
            n.stat.ephemeral_owner, CONTAINER_OWNER,
            "{p} indexed as a container"
        );
    }
    for p in tree.ttls() {
        let n = nodes
            .get(&p)
            .unwrap_or_else(|| panic!("missing TTL node {p} indexed"));
        assert_eq!(
            EphemeralType::of(n.stat.ephemeral_owner, true),
            EphemeralType::Ttl,
            "{p} indexed as a TTL node"
        );
    }
    nodes
}
