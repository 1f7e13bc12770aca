//! One znode (`DataNode`), the meaning of its ephemeralOwner (`EphemeralType`), and its share
//! of the tree digest (`DigestCalculator`).

use crate::jute::data::{Stat, StatPersisted};
use bytes::Bytes;
use std::collections::BTreeSet;

/// A znode. The path is the key of the tree's map, not stored here. `stat.cversion` counts the
/// creates of children (what sequential names use); clients see
/// `2 * cversion - numChildren` (see [`DataNode::to_stat`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataNode {
    /// `None` is Java's null (a create with null data, or a snapshot's -1 length).
    pub data: Option<Bytes>,
    /// A reference into the tree's [`super::acl::AclCache`].
    pub acl: i64,
    pub stat: StatPersisted,
    /// Child names, sorted.
    pub children: BTreeSet<Box<str>>,
}

impl DataNode {
    pub fn new(data: Option<Bytes>, acl: i64, stat: StatPersisted) -> DataNode {
        DataNode {
            data,
            acl,
            stat,
            children: BTreeSet::new(),
        }
    }

    /// Bytes of data; null counts as 0.
    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, Bytes::len)
    }

    /// `DataNode.copyStat`: what clients see. Container and TTL owners read as 0, and cversion
    /// becomes the count of child creates plus deletes (every child not present was deleted).
    pub fn to_stat(&self, extended_types: bool) -> Stat {
        let num_children = i32::try_from(self.children.len()).unwrap_or(i32::MAX);
        let owner = self.stat.ephemeral_owner;
        let client_owner = if EphemeralType::of(owner, extended_types) == EphemeralType::Normal {
            owner
        } else {
            0
        };
        Stat {
            czxid: self.stat.czxid,
            mzxid: self.stat.mzxid,
            ctime: self.stat.ctime,
            mtime: self.stat.mtime,
            version: self.stat.version,
            cversion: self
                .stat
                .cversion
                .wrapping_mul(2)
                .wrapping_sub(num_children),
            aversion: self.stat.aversion,
            ephemeral_owner: client_owner,
            data_length: i32::try_from(self.data_len()).unwrap_or(i32::MAX),
            num_children,
            pzxid: self.stat.pzxid,
        }
    }
}

/// `EphemeralType.CONTAINER_EPHEMERAL_OWNER`.
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// The high byte marking an extended owner (TTL nodes).
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
/// The 40 bits holding a TTL in milliseconds; also the largest TTL.
pub const TTL_MAX_MS: i64 = 0x0000_00ff_ffff_ffff;

/// What an ephemeralOwner value means (`EphemeralType.get`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EphemeralType {
    /// 0: a persistent node.
    Void,
    /// A session id: an ephemeral node.
    Normal,
    /// `Long.MIN_VALUE`: a container.
    Container,
    /// 0xFF high byte (with extended types enabled): a TTL node.
    Ttl,
}

impl EphemeralType {
    /// With extended types enabled, any owner whose high byte is 0xFF is a TTL node. ZooKeeper
    /// throws when the two reserved bytes are not zero; that owner only arises from a server id
    /// of 255, which ZooKeeper refuses with extended types, so it is read as TTL here too.
    pub fn of(owner: i64, extended_types: bool) -> EphemeralType {
        if extended_types && owner != CONTAINER_OWNER && owner & EXTENDED_MASK == EXTENDED_MASK {
            return EphemeralType::Ttl;
        }
        match owner {
            CONTAINER_OWNER => EphemeralType::Container,
            0 => EphemeralType::Void,
            _ => EphemeralType::Normal,
        }
    }
}

/// `EphemeralType.TTL.toEphemeralOwner`: `None` unless 0 < ttl <= [`TTL_MAX_MS`].
pub fn ttl_owner(ttl_ms: i64) -> Option<i64> {
    (ttl_ms > 0 && ttl_ms <= TTL_MAX_MS).then_some(EXTENDED_MASK | ttl_ms)
}

/// `EphemeralType.TTL.getValue`: the TTL in milliseconds of a TTL owner.
pub fn ttl_of(owner: i64) -> i64 {
    owner & TTL_MAX_MS
}

/// `DigestCalculator.calculateDigest` (version 2): CRC32 of the path ("" for the root), the
/// data, and 60 bytes of stat. Nodes under "/zookeeper/" count 0.
pub fn digest(path: &str, node: &DataNode) -> i64 {
    if path.starts_with("/zookeeper/") {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    let s = &node.stat;
    let mut fixed = [0u8; 60];
    let mut at = 0;
    for v in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime] {
        fixed[at..at + 8].copy_from_slice(&v.to_be_bytes());
        at += 8;
    }
    for v in [s.version, s.cversion, s.aversion] {
        fixed[at..at + 4].copy_from_slice(&v.to_be_bytes());
        at += 4;
    }
    fixed[at..at + 8].copy_from_slice(&s.ephemeral_owner.to_be_bytes());
    // CRC-32 (IEEE 802.3, reflected), as java.util.zip.CRC32.
    let mut crc = crc32fast::Hasher::new();
    crc.update(path.as_bytes());
    if let Some(d) = &node.data {
        crc.update(d);
    }
    crc.update(&fixed);
    i64::from(crc.finalize())
}

/// The digest algorithm version ZooKeeper 3.9 logs with each transaction (`TxnDigest.version`).
pub const DIGEST_VERSION: i32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut c = crc32fast::Hasher::new();
        c.update(b"123456789");
        assert_eq!(c.finalize(), 0xcbf4_3926);
    }

    #[test]
    fn ephemeral_types_and_ttl_encoding() {
        assert_eq!(EphemeralType::of(0, true), EphemeralType::Void);
        assert_eq!(
            EphemeralType::of(CONTAINER_OWNER, true),
            EphemeralType::Container
        );
        assert_eq!(
            EphemeralType::of(CONTAINER_OWNER, false),
            EphemeralType::Container
        );
        assert_eq!(EphemeralType::of(0x0123_4567, true), EphemeralType::Normal);
        let owner = ttl_owner(1000).unwrap();
        assert_eq!(owner as u64, 0xff00_0000_0000_03e8);
        assert_eq!(EphemeralType::of(owner, true), EphemeralType::Ttl);
        assert_eq!(EphemeralType::of(owner, false), EphemeralType::Normal);
        assert_eq!(ttl_of(owner), 1000);
        assert_eq!(ttl_owner(0), None);
        assert_eq!(ttl_owner(-5), None);
        assert_eq!(ttl_owner(TTL_MAX_MS + 1), None);
        assert_eq!(ttl_of(ttl_owner(TTL_MAX_MS).unwrap()), TTL_MAX_MS);
    }

    #[test]
    fn client_stat_view() {
        let mut node = DataNode::new(
            Some(Bytes::from_static(b"abc")),
            1,
            StatPersisted::default(),
        );
        node.stat.cversion = 3;
        node.children.insert("x".into());
        node.stat.ephemeral_owner = CONTAINER_OWNER;
        let stat = node.to_stat(true);
        assert_eq!(
            (
                stat.cversion,
                stat.num_children,
                stat.data_length,
                stat.ephemeral_owner
            ),
            (5, 1, 3, 0)
        );
        node.stat.ephemeral_owner = 77;
        assert_eq!(node.to_stat(true).ephemeral_owner, 77);
        // The root of a fresh tree: no creates counted, one child: cversion -1.
        let mut root = DataNode::default();
        root.children.insert("zookeeper".into());
        assert_eq!(root.to_stat(true).cversion, -1);
    }

    #[test]
    fn zookeeper_subtree_is_outside_the_digest() {
        let node = DataNode::new(Some(Bytes::new()), -1, StatPersisted::default());
        assert_eq!(digest("/zookeeper/quota", &node), 0);
        assert_ne!(digest("/zookeeper", &node), 0);
        assert_eq!(digest("/", &node), digest("", &node));
    }
}
