//! The data tree: ZooKeeper's `DataTree` (znodes, ephemeral/container/TTL indexes, quotas, the
//! tree digest) with its two watch managers. Pure: no I/O, clock, thread or randomness; time
//! comes in with each transaction header or call.
//!
//! Nodes live in one map from full path to [`DataNode`]; each node keeps the sorted names of
//! its children. Transactions are applied with [`DataTree::process_txn`], which follows
//! `DataTree.processTxn` exactly, including how it reports transactions that do not fit the
//! tree (NoNode, NodeExists) when a log is replayed over a fuzzy snapshot.
//!
//! Determinism: no hash-map order reaches a result, an event or a report; the same
//! transactions give the same tree, digest and events.

pub mod acl;
pub mod node;
pub mod path;
pub mod quota;
pub mod watch;

pub use acl::AclCache;
pub use node::{DataNode, EphemeralType};
pub use watch::{WatchEvent, WatchKind, WatchManager, WatcherMode};

use crate::jute::data::{Acl, Stat, StatPersisted};
use crate::jute::proto::{event_type, op, watcher_type, Code, SetWatches2};
use crate::jute::txn::{TxnBody, TxnHeader};
use bytes::Bytes;
use path::java_len;
use quota::{QuotaPaths, StatsTrack};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A client connection. Watches belong to connections (ZooKeeper's `ServerCnxn` watchers).
pub type CnxnId = u64;

/// What applying one transaction did (`DataTree.ProcessTxnResult`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessTxnResult {
    /// The header's type (or, inside a multi, the sub-transaction's; -1 for the errors a
    /// failed multi reports).
    pub type_: i32,
    pub err: Code,
    /// The path the transaction names ("" for those without one).
    pub path: String,
    /// The node's stat after create2/createContainer/createTTL, setData and setACL.
    pub stat: Option<Stat>,
    /// One result per sub-transaction of a multi.
    pub multi: Vec<ProcessTxnResult>,
}

impl ProcessTxnResult {
    fn new(type_: i32) -> ProcessTxnResult {
        ProcessTxnResult {
            type_,
            err: Code::Ok,
            path: String::new(),
            stat: None,
            multi: Vec::new(),
        }
    }
}

/// The transaction being applied, and where its watch events go.
struct Apply<'a> {
    client_id: i64,
    zxid: i64,
    time_ms: i64,
    can_read: &'a dyn Fn(CnxnId, &[Acl]) -> bool,
    events: &'a mut Vec<WatchEvent>,
}

/// The tree. See the module documentation.
pub struct DataTree {
    /// Full path -> node; the root is "/" (ZooKeeper also maps "": [`DataTree::node`] accepts
    /// both).
    nodes: HashMap<Box<str>, DataNode, ahash::RandomState>,
    acls: AclCache,
    data_watches: WatchManager,
    child_watches: WatchManager,
    /// Session -> its ephemerals. Like ZooKeeper, a session keeps an (empty) entry after its
    /// last ephemeral is deleted, until the session closes.
    ephemerals: BTreeMap<i64, BTreeSet<Box<str>>>,
    containers: BTreeSet<Box<str>>,
    ttls: BTreeSet<Box<str>>,
    quotas: QuotaPaths,
    /// `nodeDataSize` (what mntr reports): path lengths in UTF-16 units plus data lengths,
    /// kept up to date by create, delete and setData only, as in ZooKeeper.
    data_size: i64,
    /// The sum of every node's digest, wrapping (ZooKeeper's `AdHash`).
    digest: i64,
    last_processed_zxid: i64,
    extended_types: bool,
}

impl Default for DataTree {
    fn default() -> DataTree {
        DataTree::new()
    }
}

impl DataTree {
    /// A fresh tree as ZooKeeper's constructor makes it: "/", "/zookeeper",
    /// "/zookeeper/quota" (all zero stats, empty data, OPEN_ACL_UNSAFE as reference -1) and
    /// "/zookeeper/config" (empty data, READ_ACL_UNSAFE, aversion -1 from the setACL that
    /// gives it that ACL). Extended types (TTL owners) are recognized; see
    /// [`DataTree::set_extended_types`].
    pub fn new() -> DataTree {
        let mut tree = DataTree::empty(true);
        let empty = || Some(Bytes::new());
        tree.insert_raw(
            "/",
            DataNode::new(empty(), acl::OPEN_UNSAFE_REF, StatPersisted::default()),
        );
        tree.insert_raw(
            "/zookeeper",
            DataNode::new(empty(), acl::OPEN_UNSAFE_REF, StatPersisted::default()),
        );
        tree.insert_raw(
            quota::QUOTA_ROOT,
            DataNode::new(empty(), acl::OPEN_UNSAFE_REF, StatPersisted::default()),
        );
        let config_acl = tree.acls.intern(&Acl::read_unsafe());
        let config_stat = StatPersisted {
            aversion: -1,
            ..StatPersisted::default()
        };
        tree.insert_raw(
            "/zookeeper/config",
            DataNode::new(empty(), config_acl, config_stat),
        );
        tree.data_size = tree.full_data_size();
        tree
    }

    fn empty(extended_types: bool) -> DataTree {
        DataTree {
            nodes: HashMap::default(),
            acls: AclCache::new(),
            data_watches: WatchManager::new(),
            child_watches: WatchManager::new(),
            ephemerals: BTreeMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            quotas: QuotaPaths::default(),
            data_size: 0,
            digest: 0,
            last_processed_zxid: 0,
            extended_types,
        }
    }

    /// Adds a node under an existing parent without stat changes, events or quota updates
    /// (construction and snapshot loading).
    fn insert_raw(&mut self, path: &str, node: DataNode) {
        if path != "/" {
            if let Some(parent) = self.nodes.get_mut(path::parent(path)) {
                parent.children.insert(path::name(path).into());
            }
        }
        self.digest = self.digest.wrapping_add(node::digest(path, &node));
        self.nodes.insert(path.into(), node);
    }

    /// `zookeeper.extendedTypesEnabled`: whether an ephemeralOwner with a 0xFF high byte means
    /// a TTL node. On by default here (ZooKeeper's default is off); set it from the
    /// configuration before applying transactions.
    pub fn set_extended_types(&mut self, enabled: bool) {
        self.extended_types = enabled;
    }

    pub fn extended_types(&self) -> bool {
        self.extended_types
    }

    // ----- reads -----

    /// The node at `path` ("" is the root too, as in ZooKeeper).
    pub fn node(&self, path: &str) -> Option<&DataNode> {
        self.nodes.get(key(path))
    }

    /// The node's stat as clients see it (dataLength, numChildren, client cversion/owner).
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.node(path).map(|n| self.stat_of(n))
    }

    pub fn stat_of(&self, node: &DataNode) -> Stat {
        node.to_stat(self.extended_types)
    }

    /// The node's ACL list.
    pub fn acl(&self, node: &DataNode) -> &[Acl] {
        self.acls.get(node.acl)
    }

    pub fn acl_cache(&self) -> &AclCache {
        &self.acls
    }

    /// Child names, sorted.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.node(path)
            .map(|n| n.children.iter().map(|c| c.to_string()).collect())
    }

    /// `getAllChildrenNumber`: every descendant (not the node itself); `None` when the node
    /// does not exist.
    pub fn count_descendants(&self, path: &str) -> Option<i32> {
        let start = self.node(path)?;
        if path == "/" {
            // ZooKeeper: nodes.size() - 2, its map holding the root under "" and "/".
            return Some(clamp_i32(self.nodes.len() - 1));
        }
        if path.is_empty() {
            // Every key starting with "/": the whole tree, root included.
            return Some(clamp_i32(self.nodes.len()));
        }
        let mut count: usize = 0;
        let mut stack: Vec<String> = start
            .children
            .iter()
            .map(|c| format!("{path}/{c}"))
            .collect();
        while let Some(p) = stack.pop() {
            count += 1;
            if let Some(n) = self.nodes.get(p.as_str()) {
                stack.extend(n.children.iter().map(|c| format!("{p}/{c}")));
            }
        }
        Some(clamp_i32(count))
    }

    /// `getNodeCount` (mntr's zk_znode_count, stat's "Node count"): ZooKeeper's map holds the
    /// root twice ("" and "/"), so this is the number of nodes plus one: 5 for a fresh tree.
    pub fn node_count(&self) -> usize {
        self.nodes.len() + 1
    }

    /// `cachedApproximateDataSize` (mntr's zk_approximate_data_size): the sum of path lengths
    /// (UTF-16 units) and data lengths, as create, delete and setData maintain it.
    pub fn approximate_data_size(&self) -> u64 {
        u64::try_from(self.data_size).unwrap_or(0)
    }

    /// `approximateDataSize()` computed afresh, counting the root under both of ZooKeeper's
    /// keys ("" and "/").
    fn full_data_size(&self) -> i64 {
        let root_data = self.nodes.get("/").map_or(0, DataNode::data_len);
        let sum: usize = self
            .nodes
            .iter()
            .map(|(p, n)| java_len(p) + n.data_len())
            .sum();
        i64::try_from(sum + root_data).unwrap_or(i64::MAX)
    }

    /// `getEphemeralsCount`.
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// The session's ephemerals, sorted.
    pub fn ephemerals(&self, session: i64) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default()
    }

    /// getEphemerals as FinalRequestProcessor answers it: all of them when the prefix is
    /// blank or "/" (after Java's trim), else those whose path starts with the prefix.
    pub fn ephemerals_with_prefix(&self, session: i64, prefix: &str) -> Vec<String> {
        let trimmed = prefix.trim_matches(|c: char| c <= ' ');
        let all = trimmed.is_empty() || trimmed == "/";
        self.ephemerals
            .get(&session)
            .map(|s| {
                s.iter()
                    .filter(|p| all || p.starts_with(prefix))
                    .map(|p| p.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sessions with ephemerals (including sessions whose last ephemeral was deleted, as
    /// ZooKeeper's dump lists them), ascending, each with its paths sorted.
    pub fn ephemerals_by_session(&self) -> impl Iterator<Item = (i64, Vec<&str>)> {
        self.ephemerals
            .iter()
            .map(|(s, paths)| (*s, paths.iter().map(|p| &**p).collect()))
    }

    /// Container nodes, sorted.
    pub fn containers(&self) -> Vec<String> {
        self.containers.iter().map(|p| p.to_string()).collect()
    }

    /// TTL nodes, sorted.
    pub fn ttls(&self) -> Vec<String> {
        self.ttls.iter().map(|p| p.to_string()).collect()
    }

    /// `ContainerManager.getCandidates` with `maxNeverUsedIntervalMs` = 0, sorted, at most
    /// `limit`: empty containers that once had a child (stored cversion > 0), and childless TTL
    /// nodes not modified for longer than their TTL.
    pub fn container_candidates(&self, now_ms: i64, limit: usize) -> Vec<String> {
        let mut found: BTreeSet<&str> = BTreeSet::new();
        for p in &self.containers {
            if let Some(n) = self.nodes.get(p) {
                if n.children.is_empty() && n.stat.cversion > 0 {
                    found.insert(p);
                }
            }
        }
        for p in &self.ttls {
            if let Some(n) = self.nodes.get(p) {
                let owner = n.stat.ephemeral_owner;
                if n.children.is_empty()
                    && EphemeralType::of(owner, self.extended_types) == EphemeralType::Ttl
                {
                    let ttl_ms = node::ttl_of(owner);
                    if ttl_ms != 0 && now_ms.saturating_sub(n.stat.mtime) > ttl_ms {
                        found.insert(p);
                    }
                }
            }
        }
        found.into_iter().take(limit).map(str::to_owned).collect()
    }

    /// The zxid of the newest transaction applied.
    pub fn last_processed_zxid(&self) -> i64 {
        self.last_processed_zxid
    }

    /// ZooKeeper's tree digest (`getTreeDigest`, digest version [`node::DIGEST_VERSION`]):
    /// the wrapping sum of each node's CRC32 digest, nodes under "/zookeeper/" excluded.
    pub fn digest(&self) -> i64 {
        self.digest
    }

    /// Visits every node depth-first, parents before children, children in sorted order, with
    /// paths as a snapshot names them: "" for the root, "/a" for its children.
    pub fn for_each_depth_first(&self, mut f: impl FnMut(&str, &DataNode)) {
        let mut stack: Vec<String> = vec![String::new()];
        while let Some(p) = stack.pop() {
            let Some(n) = self.nodes.get(key(&p)) else {
                continue;
            };
            f(&p, n);
            stack.extend(n.children.iter().rev().map(|c| format!("{p}/{c}")));
        }
    }

    // ----- quotas -----

    /// `getMaxPrefixWithQuota`: the quota root covering `path`, if any.
    pub fn quota_root(&self, path: &str) -> Option<String> {
        self.quotas.max_prefix(path)
    }

    /// `ZooKeeperServer.checkQuota` (call it only with `enforceQuota`): fails with
    /// `QuotaExceeded` when the change would pass a hard limit of the quota covering `path`;
    /// passing a soft limit only logs a warning.
    pub fn check_quota(&self, path: &str, bytes_delta: i64, count_delta: i64) -> Result<(), Code> {
        let Some(root) = self.quotas.max_prefix(path) else {
            return Ok(());
        };
        let Some(limit_node) = self.nodes.get(quota::limit_path(&root).as_str()) else {
            log::error!("Missing limit node for quota {}", quota::limit_path(&root));
            return Ok(());
        };
        let limits = StatsTrack::parse(limit_node.data.as_deref().unwrap_or_default());
        let check_count =
            count_delta != 0 && (limits.count() > -1 || limits.count_hard_limit() > -1);
        let check_bytes =
            bytes_delta != 0 && (limits.bytes() > -1 || limits.byte_hard_limit() > -1);
        if !check_count && !check_bytes {
            return Ok(());
        }
        let Some(stat_node) = self.nodes.get(quota::stat_path(&root).as_str()) else {
            log::error!("Missing node for stat {}", quota::stat_path(&root));
            return Ok(());
        };
        let current = StatsTrack::parse(stat_node.data.as_deref().unwrap_or_default());
        if check_count {
            let new = current.count().saturating_add(count_delta);
            exceeds(
                &root,
                "count",
                "Count",
                new,
                limits.count(),
                limits.count_hard_limit(),
            )?;
        }
        if check_bytes {
            let new = current.bytes().saturating_add(bytes_delta);
            exceeds(
                &root,
                "bytes",
                "Byte",
                new,
                limits.bytes(),
                limits.byte_hard_limit(),
            )?;
        }
        Ok(())
    }

    // ----- watches -----

    /// Registers a watch (getData/exists, getChildren, addWatch).
    pub fn add_watch(&mut self, path: &str, cnxn: CnxnId, kind: WatchKind) {
        match kind {
            WatchKind::Data => {
                self.data_watches.add(path, cnxn, WatcherMode::Standard);
            }
            WatchKind::Child => {
                self.child_watches.add(path, cnxn, WatcherMode::Standard);
            }
            WatchKind::Persistent => {
                self.data_watches.add(path, cnxn, WatcherMode::Persistent);
                self.child_watches.add(path, cnxn, WatcherMode::Persistent);
            }
            WatchKind::PersistentRecursive => {
                self.data_watches
                    .add(path, cnxn, WatcherMode::PersistentRecursive);
            }
        }
    }

    /// `DataTree.setWatches` (a reconnecting client's watches): each data/child watch whose
    /// node changed after `relative_zxid`, or whose node's existence changed, fires at once
    /// (zxid -1, no ACL check, as ZooKeeper); the others, and every persistent watch, are
    /// re-armed.
    pub fn set_watches(
        &mut self,
        relative_zxid: i64,
        w: &SetWatches2,
        cnxn: CnxnId,
        events: &mut Vec<WatchEvent>,
    ) {
        let mut fire = |type_: i32, path: &str| {
            events.push(WatchEvent {
                cnxn,
                type_,
                path: path.to_owned(),
                zxid: -1,
            });
        };
        for p in &w.data_watches {
            match self.node(p).map(|n| n.stat.mzxid) {
                None => fire(event_type::NODE_DELETED, p),
                Some(mzxid) if mzxid > relative_zxid => fire(event_type::NODE_DATA_CHANGED, p),
                Some(_) => {
                    self.data_watches.add(p, cnxn, WatcherMode::Standard);
                }
            }
        }
        for p in &w.exist_watches {
            if self.node(p).is_some() {
                fire(event_type::NODE_CREATED, p);
            } else {
                self.data_watches.add(p, cnxn, WatcherMode::Standard);
            }
        }
        for p in &w.child_watches {
            match self.node(p).map(|n| n.stat.pzxid) {
                None => fire(event_type::NODE_DELETED, p),
                Some(pzxid) if pzxid > relative_zxid => fire(event_type::NODE_CHILDREN_CHANGED, p),
                Some(_) => {
                    self.child_watches.add(p, cnxn, WatcherMode::Standard);
                }
            }
        }
        for p in &w.persistent_watches {
            self.child_watches.add(p, cnxn, WatcherMode::Persistent);
            self.data_watches.add(p, cnxn, WatcherMode::Persistent);
        }
        for p in &w.persistent_recursive_watches {
            self.data_watches
                .add(p, cnxn, WatcherMode::PersistentRecursive);
        }
    }

    /// checkWatches (`dry_run`) and removeWatches (`DataTree.containsWatcher` /
    /// `removeWatch`): true when a watch of `watcher_type` matched. Unknown types match
    /// nothing.
    pub fn remove_watches(
        &mut self,
        path: &str,
        cnxn: CnxnId,
        watcher_type: i32,
        dry_run: bool,
    ) -> bool {
        use WatcherMode::{Persistent, PersistentRecursive, Standard};
        match (watcher_type, dry_run) {
            (watcher_type::CHILDREN, true) => {
                self.child_watches.contains(path, cnxn, Some(Standard))
            }
            (watcher_type::CHILDREN, false) => {
                self.child_watches.remove(path, cnxn, Some(Standard))
            }
            (watcher_type::DATA, true) => self.data_watches.contains(path, cnxn, Some(Standard)),
            (watcher_type::DATA, false) => self.data_watches.remove(path, cnxn, Some(Standard)),
            (watcher_type::PERSISTENT, true) => {
                self.data_watches.contains(path, cnxn, Some(Persistent))
            }
            (watcher_type::PERSISTENT, false) => {
                let child = self.child_watches.remove(path, cnxn, Some(Persistent));
                let data = self.data_watches.remove(path, cnxn, Some(Persistent));
                child || data
            }
            (watcher_type::PERSISTENT_RECURSIVE, true) => {
                self.data_watches
                    .contains(path, cnxn, Some(PersistentRecursive))
            }
            (watcher_type::PERSISTENT_RECURSIVE, false) => {
                self.data_watches
                    .remove(path, cnxn, Some(PersistentRecursive))
            }
            (watcher_type::ANY, true) => {
                self.child_watches.contains(path, cnxn, None)
                    || self.data_watches.contains(path, cnxn, None)
            }
            (watcher_type::ANY, false) => {
                let child = self.child_watches.remove(path, cnxn, None);
                let data = self.data_watches.remove(path, cnxn, None);
                child || data
            }
            _ => false,
        }
    }

    /// The connection closed: all its watches go.
    pub fn remove_cnxn(&mut self, cnxn: CnxnId) {
        self.data_watches.remove_cnxn(cnxn);
        self.child_watches.remove_cnxn(cnxn);
    }

    /// The data watch manager (getData/exists/persistent/recursive watches). ZooKeeper's
    /// wchs, wchc and wchp report this manager only.
    pub fn data_watches(&self) -> &WatchManager {
        &self.data_watches
    }

    /// The child watch manager (getChildren and persistent watches).
    pub fn child_watches(&self) -> &WatchManager {
        &self.child_watches
    }

    /// `getWatchCount` (mntr's zk_watch_count): both managers.
    pub fn watch_count(&self) -> usize {
        self.data_watches.len() + self.child_watches.len()
    }

    // ----- transactions -----

    /// `DataTree.processTxn`: applies one transaction, appending the watch events it fires (in
    /// delivery order) to `events`. `can_read(cnxn, acl)` decides whether a connection may
    /// see an event about a node with that ACL (ZooKeeper checks READ on every delivery).
    pub fn process_txn(
        &mut self,
        header: &TxnHeader,
        body: &TxnBody,
        can_read: &dyn Fn(CnxnId, &[Acl]) -> bool,
        events: &mut Vec<WatchEvent>,
    ) -> ProcessTxnResult {
        let mut ctx = Apply {
            client_id: header.client_id,
            zxid: header.zxid,
            time_ms: header.time,
            can_read,
            events,
        };
        let mut rc = self.apply(body, &mut ctx);
        rc.type_ = header.type_;
        if header.zxid > self.last_processed_zxid {
            self.last_processed_zxid = header.zxid;
        }
        rc
    }

    fn apply(&mut self, body: &TxnBody, ctx: &mut Apply<'_>) -> ProcessTxnResult {
        let mut rc = ProcessTxnResult::new(body.type_code());
        let outcome = match body {
            TxnBody::Create(..) | TxnBody::CreateContainer(_) | TxnBody::CreateTtl(_) => {
                self.apply_create(body, ctx, &mut rc)
            }
            TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => {
                rc.path.clone_from(&t.path);
                self.delete_node(&t.path, ctx)
            }
            TxnBody::SetData(t) => {
                rc.path.clone_from(&t.path);
                self.set_data(&t.path, &t.data, t.version, ctx)
                    .map(|stat| rc.stat = Some(stat))
            }
            TxnBody::SetAcl(t) => {
                rc.path.clone_from(&t.path);
                self.set_acl(&t.path, &t.acl, t.version)
                    .map(|stat| rc.stat = Some(stat))
            }
            TxnBody::Check(t) => {
                rc.path.clone_from(&t.path);
                Ok(())
            }
            TxnBody::CreateSession(_) => Ok(()),
            TxnBody::CloseSession(t) => {
                let listed = t.as_ref().map(|t| t.paths_to_delete.as_slice());
                self.kill_session(ctx.client_id, listed, ctx);
                Ok(())
            }
            TxnBody::Error(e) => Err(code_from_i32(e.err)),
            TxnBody::Multi(subs) => {
                self.apply_multi(subs, ctx, &mut rc);
                Ok(())
            }
        };
        if let Err(code) = outcome {
            rc.err = code;
        }
        rc
    }

    /// The create family. Only create2, createContainer and createTTL report the new stat. A
    /// create of any kind that finds its node already there (a replay over a fuzzy snapshot)
    /// still moves the parent's cversion and pzxid forward to what the create gave them.
    /// ZooKeeper does this for plain creates only, which leaves the parent behind after a
    /// replayed create2 and can hand out a sequential name twice.
    fn apply_create(
        &mut self,
        body: &TxnBody,
        ctx: &mut Apply<'_>,
        rc: &mut ProcessTxnResult,
    ) -> Result<(), Code> {
        let code = body.type_code();
        let new = NewNode::of(body, ctx.client_id)?;
        rc.path = new.path.to_owned();
        let Some(owner) = new.owner else {
            // ZooKeeper throws here (prep never lets such a TTL through).
            log::error!(
                "createTTL txn 0x{:x} for {} has an invalid ttl",
                ctx.zxid,
                new.path
            );
            return Err(Code::BadArguments);
        };
        match self.create_node(&new, owner, ctx) {
            Ok(stat) => {
                rc.stat = (code != op::CREATE).then_some(stat);
                Ok(())
            }
            Err(Code::NodeExists) => {
                self.set_cversion_pzxid(path::parent(new.path), new.parent_cversion, ctx.zxid)?;
                Err(Code::NodeExists)
            }
            Err(e) => Err(e),
        }
    }

    /// A multi: when any sub-transaction is an error, nothing is applied and every other one
    /// reports OK (before the first error) or RUNTIMEINCONSISTENCY (after it). The multi's
    /// error is the first non-OK sub-result.
    fn apply_multi(&mut self, subs: &[TxnBody], ctx: &mut Apply<'_>, rc: &mut ProcessTxnResult) {
        let failed = subs.iter().any(|s| matches!(s, TxnBody::Error(_)));
        let mut past_failure = false;
        for sub in subs {
            if !allowed_in_multi(sub) {
                // ZooKeeper stops at an op a multi may not hold (an IOException it logs).
                log::error!(
                    "Invalid type of op in multi txn 0x{:x}: {}",
                    ctx.zxid,
                    sub.type_code()
                );
                break;
            }
            let is_error = matches!(sub, TxnBody::Error(_));
            past_failure |= is_error;
            let sub_rc = if failed && !is_error {
                let mut r = ProcessTxnResult::new(op::ERROR);
                r.err = if past_failure {
                    Code::RuntimeInconsistency
                } else {
                    Code::Ok
                };
                r
            } else {
                self.apply(sub, ctx)
            };
            if sub_rc.err != Code::Ok && rc.err == Code::Ok {
                rc.err = sub_rc.err;
            }
            rc.multi.push(sub_rc);
        }
    }

    /// `DataTree.createNode`.
    fn create_node(
        &mut self,
        new: &NewNode<'_>,
        owner: i64,
        ctx: &mut Apply<'_>,
    ) -> Result<Stat, Code> {
        let path = new.path;
        let Some(slash) = path.rfind('/') else {
            return Err(Code::NoNode);
        };
        let (parent_name, child_name) = (&path[..slash], &path[slash + 1..]);
        if !self.nodes.contains_key(key(parent_name)) {
            return Err(Code::NoNode);
        }
        let acl_ref = self.acls.intern(new.acl);
        if let Some(existing) = self.nodes.get_mut(key(path)) {
            // ZooKeeper gives an existing node the txn's ACL (fuzzy-snapshot replay); the old
            // reference is released here so the count stays exact.
            let old = std::mem::replace(&mut existing.acl, acl_ref);
            self.acls.release(old);
            return Err(Code::NodeExists);
        }
        let parent_acl = self.link_child(parent_name, child_name, new.parent_cversion, ctx.zxid)?;
        let stat = StatPersisted {
            czxid: ctx.zxid,
            mzxid: ctx.zxid,
            ctime: ctx.time_ms,
            mtime: ctx.time_ms,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: ctx.zxid,
        };
        let child = DataNode::new(new.data.clone(), acl_ref, stat);
        let data_len = child.data_len();
        self.data_size += size_of(path, data_len);
        self.digest = self.digest.wrapping_add(node::digest(path, &child));
        let client_stat = self.stat_of(&child);
        self.nodes.insert(path.into(), child);
        self.index_owner(path, owner);
        self.quota_on_create(parent_name, child_name, path, data_len);

        fire(
            &mut self.data_watches,
            path,
            event_type::NODE_CREATED,
            new.acl,
            None,
            ctx,
        );
        let parent_path = if parent_name.is_empty() {
            "/"
        } else {
            parent_name
        };
        let parent_acl = self.acls.get(parent_acl);
        fire(
            &mut self.child_watches,
            parent_path,
            event_type::NODE_CHILDREN_CHANGED,
            parent_acl,
            None,
            ctx,
        );
        Ok(client_stat)
    }

    /// Adds `child_name` to its parent, moving the parent's cversion (and pzxid with it) to
    /// `parent_cversion` (-1: one more) but only forward, so a create replayed over a fuzzy
    /// snapshot cannot move them back. Returns the parent's ACL reference.
    fn link_child(
        &mut self,
        parent_name: &str,
        child_name: &str,
        parent_cversion: i32,
        zxid: i64,
    ) -> Result<i64, Code> {
        let parent_key = key(parent_name);
        let Some(parent) = self.nodes.get_mut(parent_key) else {
            return Err(Code::NoNode);
        };
        self.digest = self.digest.wrapping_sub(node::digest(parent_key, parent));
        let cversion = if parent_cversion == -1 {
            parent.stat.cversion.wrapping_add(1)
        } else {
            parent_cversion
        };
        if cversion > parent.stat.cversion {
            parent.stat.cversion = cversion;
            parent.stat.pzxid = zxid;
        }
        parent.children.insert(child_name.into());
        self.digest = self.digest.wrapping_add(node::digest(parent_key, parent));
        Ok(parent.acl)
    }

    /// Quota bookkeeping after a create: a new limits node makes its path a quota root, a new
    /// stats node is filled from the subtree, and the covering quota counts the new node.
    fn quota_on_create(
        &mut self,
        parent_name: &str,
        child_name: &str,
        path: &str,
        data_len: usize,
    ) {
        if let Some(real) = parent_name.strip_prefix(quota::QUOTA_ROOT) {
            if child_name == quota::LIMIT_NODE {
                self.quotas.add(real);
            }
            if child_name == quota::STAT_NODE {
                self.update_quota_for_path(real);
            }
        }
        if let Some(root) = self.quotas.max_prefix(path) {
            self.update_quota_stat(&root, to_i64(data_len), 1);
        }
    }

    /// `DataTree.deleteNode`. Like ZooKeeper, the parent's child set and pzxid are updated
    /// before the node is looked up, so replaying a delete of a missing node still moves the
    /// parent's pzxid. The root is never deleted.
    fn delete_node(&mut self, path: &str, ctx: &mut Apply<'_>) -> Result<(), Code> {
        if key(path) == "/" {
            log::error!("Refusing to delete the root (txn 0x{:x})", ctx.zxid);
            return Err(Code::BadArguments);
        }
        let Some(slash) = path.rfind('/') else {
            return Err(Code::NoNode);
        };
        let (parent_name, child_name) = (&path[..slash], &path[slash + 1..]);
        let parent_acl = self.unlink_child(parent_name, child_name, ctx.zxid)?;
        let Some(gone) = self.nodes.remove(path) else {
            return Err(Code::NoNode);
        };
        self.digest = self.digest.wrapping_sub(node::digest(path, &gone));
        self.data_size -= size_of(path, gone.data_len());
        self.unindex_owner(path, gone.stat.ephemeral_owner);
        self.quota_on_delete(parent_name, child_name, path, gone.data_len());

        let acl = self.acls.get(gone.acl);
        let notified = fire(
            &mut self.data_watches,
            path,
            event_type::NODE_DELETED,
            acl,
            None,
            ctx,
        );
        // A connection notified through its data watch is not notified twice.
        fire(
            &mut self.child_watches,
            path,
            event_type::NODE_DELETED,
            acl,
            Some(&notified),
            ctx,
        );
        let parent_path = if parent_name.is_empty() {
            "/"
        } else {
            parent_name
        };
        let parent_acl = self.acls.get(parent_acl);
        fire(
            &mut self.child_watches,
            parent_path,
            event_type::NODE_CHILDREN_CHANGED,
            parent_acl,
            None,
            ctx,
        );
        self.acls.release(gone.acl);
        Ok(())
    }

    /// Removes `child_name` from its parent and moves the parent's pzxid forward (never
    /// back, so a higher pzxid a create set survives). Returns the parent's ACL reference.
    fn unlink_child(
        &mut self,
        parent_name: &str,
        child_name: &str,
        zxid: i64,
    ) -> Result<i64, Code> {
        let parent_key = key(parent_name);
        let Some(parent) = self.nodes.get_mut(parent_key) else {
            return Err(Code::NoNode);
        };
        self.digest = self.digest.wrapping_sub(node::digest(parent_key, parent));
        parent.children.remove(child_name);
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        self.digest = self.digest.wrapping_add(node::digest(parent_key, parent));
        Ok(parent.acl)
    }

    /// Quota bookkeeping after a delete: a deleted limits node ends its quota, and the
    /// covering quota stops counting the node.
    fn quota_on_delete(
        &mut self,
        parent_name: &str,
        child_name: &str,
        path: &str,
        data_len: usize,
    ) {
        if parent_name.starts_with("/zookeeper") && child_name == quota::LIMIT_NODE {
            // ZooKeeper trims 16 characters off any parent under "/zookeeper" (and throws when
            // there are fewer).
            match java_substring_from(parent_name, quota::QUOTA_ROOT.len()) {
                Some(real) => self.quotas.delete(real),
                None => log::warn!("Ignoring {path}: not under {}", quota::QUOTA_ROOT),
            }
        }
        if let Some(root) = self.quotas.max_prefix(path) {
            self.update_quota_stat(&root, -to_i64(data_len), -1);
        }
    }

    /// `DataTree.setData`: the version comes from the transaction.
    fn set_data(
        &mut self,
        path: &str,
        data: &Option<Bytes>,
        version: i32,
        ctx: &mut Apply<'_>,
    ) -> Result<Stat, Code> {
        let k = key(path);
        let Some(n) = self.nodes.get_mut(k) else {
            return Err(Code::NoNode);
        };
        self.digest = self.digest.wrapping_sub(node::digest(k, n));
        let old_len = n.data_len();
        n.data.clone_from(data);
        n.stat.mtime = ctx.time_ms;
        n.stat.mzxid = ctx.zxid;
        n.stat.version = version;
        self.digest = self.digest.wrapping_add(node::digest(k, n));
        let new_len = n.data_len();
        let acl_ref = n.acl;
        let stat = n.to_stat(self.extended_types);

        let diff = to_i64(new_len) - to_i64(old_len);
        if let Some(root) = self.quotas.max_prefix(path) {
            self.update_quota_stat(&root, diff, 0);
        }
        self.data_size += diff;

        let acl = self.acls.get(acl_ref);
        fire(
            &mut self.data_watches,
            path,
            event_type::NODE_DATA_CHANGED,
            acl,
            None,
            ctx,
        );
        Ok(stat)
    }

    /// `DataTree.setACL`: the aversion comes from the transaction. Fires no watch.
    fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, Code> {
        let k = key(path);
        let Some(n) = self.nodes.get_mut(k) else {
            return Err(Code::NoNode);
        };
        self.acls.release(n.acl);
        self.digest = self.digest.wrapping_sub(node::digest(k, n));
        n.stat.aversion = version;
        n.acl = self.acls.intern(acl);
        self.digest = self.digest.wrapping_add(node::digest(k, n));
        Ok(n.to_stat(self.extended_types))
    }

    /// `DataTree.setCversionPzxid`: moves cversion (and pzxid with it) forward only.
    fn set_cversion_pzxid(&mut self, path: &str, cversion: i32, zxid: i64) -> Result<(), Code> {
        let k = key(path.strip_suffix('/').unwrap_or(path));
        let Some(n) = self.nodes.get_mut(k) else {
            return Err(Code::NoNode);
        };
        let cversion = if cversion == -1 {
            n.stat.cversion.wrapping_add(1)
        } else {
            cversion
        };
        if cversion > n.stat.cversion {
            self.digest = self.digest.wrapping_sub(node::digest(k, n));
            n.stat.cversion = cversion;
            n.stat.pzxid = zxid;
            self.digest = self.digest.wrapping_add(node::digest(k, n));
        }
        Ok(())
    }

    /// `DataTree.killSession`: deletes the paths the closeSession transaction lists, then the
    /// session's other ephemerals (ZooKeeper warns about those), in path order.
    fn kill_session(&mut self, session: i64, listed: Option<&[String]>, ctx: &mut Apply<'_>) {
        let own = self.ephemerals.remove(&session);
        if let Some(paths) = listed {
            for p in paths {
                self.delete_ephemeral(session, p, ctx);
            }
        }
        let Some(mut own) = own else {
            return;
        };
        if let Some(paths) = listed {
            for p in paths {
                own.remove(p.as_str());
            }
            if !own.is_empty() {
                log::warn!(
                    "Unexpected extra paths under session 0x{session:x} which are not in txn 0x{:x}: {own:?}",
                    ctx.zxid
                );
            }
        }
        for p in own {
            self.delete_ephemeral(session, &p, ctx);
        }
    }

    fn delete_ephemeral(&mut self, session: i64, path: &str, ctx: &mut Apply<'_>) {
        match self.delete_node(path, ctx) {
            Ok(()) => log::debug!("Deleting ephemeral node {path} for session 0x{session:x}"),
            Err(_) => log::warn!(
                "Ignoring NoNodeException for path {path} while removing ephemeral for dead session 0x{session:x}"
            ),
        }
    }

    fn index_owner(&mut self, path: &str, owner: i64) {
        match EphemeralType::of(owner, self.extended_types) {
            EphemeralType::Container => {
                self.containers.insert(path.into());
            }
            EphemeralType::Ttl => {
                self.ttls.insert(path.into());
            }
            EphemeralType::Normal => {
                self.ephemerals
                    .entry(owner)
                    .or_default()
                    .insert(path.into());
            }
            EphemeralType::Void => {}
        }
    }

    fn unindex_owner(&mut self, path: &str, owner: i64) {
        match EphemeralType::of(owner, self.extended_types) {
            EphemeralType::Container => {
                self.containers.remove(path);
            }
            EphemeralType::Ttl => {
                self.ttls.remove(path);
            }
            EphemeralType::Normal => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(path);
                }
            }
            EphemeralType::Void => {}
        }
    }

    /// `updateQuotaForPath`: rewrites the stats node of the quota on `path` with the subtree's
    /// actual node count and data bytes (the node itself included).
    fn update_quota_for_path(&mut self, path: &str) {
        let (count, bytes) = self.subtree_counts(path);
        let mut stats = StatsTrack::default();
        stats.set_bytes(bytes);
        stats.set_count(count);
        let stat_path = quota::stat_path(path);
        match self.nodes.get_mut(stat_path.as_str()) {
            Some(n) => n.data = Some(Bytes::from(stats.to_text())),
            None => log::warn!("Missing quota stat node {stat_path}"),
        }
    }

    /// `getCounts`: nodes and data bytes of the subtree at `path`. Children are found at
    /// `path + "/" + name`, literally as ZooKeeper builds them (so a quota on "/" counts the
    /// root alone).
    fn subtree_counts(&self, path: &str) -> (i64, i64) {
        let (mut count, mut bytes) = (0i64, 0i64);
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            let Some(n) = self.nodes.get(key(&p)) else {
                continue;
            };
            count += 1;
            bytes += to_i64(n.data_len());
            stack.extend(n.children.iter().map(|c| format!("{p}/{c}")));
        }
        (count, bytes)
    }

    /// `updateQuotaStat`: adds to the stats node of quota `root`. Like ZooKeeper, this
    /// rewrites the data only: no stat, digest or data-size change, no watch.
    fn update_quota_stat(&mut self, root: &str, bytes_diff: i64, count_diff: i64) {
        let stat_path = quota::stat_path(root);
        let Some(n) = self.nodes.get_mut(stat_path.as_str()) else {
            log::error!("Missing node for stat {stat_path}");
            return;
        };
        let mut stats = StatsTrack::parse(n.data.as_deref().unwrap_or_default());
        stats.set_count(stats.count().saturating_add(count_diff));
        stats.set_bytes(stats.bytes().saturating_add(bytes_diff));
        n.data = Some(Bytes::from(stats.to_text()));
    }
}

/// Builds a tree from a snapshot (`DataTree.deserialize`): ACL entries first, then nodes,
/// parents before children (the root as "" or "/"), then [`TreeLoader::finish`].
pub struct TreeLoader {
    tree: DataTree,
}

impl TreeLoader {
    pub fn new(extended_types: bool) -> TreeLoader {
        TreeLoader {
            tree: DataTree::empty(extended_types),
        }
    }

    /// One entry of the snapshot's ACL map.
    pub fn acl(&mut self, r: i64, acl: Vec<Acl>) {
        self.tree.acls.insert_loaded(r, acl);
    }

    /// One node. `node.children` is ignored: children are known from the paths that follow.
    /// A path that is not absolute, has an empty component ("//a", "/a/") or was given before
    /// is refused: the tree would list a child that leads nowhere or hold a node no parent
    /// lists (ZooKeeper's `DataTree.deserialize` accepts both silently).
    pub fn node(&mut self, path: &str, mut node: DataNode) -> Result<(), String> {
        node.children.clear();
        let k = key(path);
        if k != "/" {
            let well_formed = k
                .strip_prefix('/')
                .is_some_and(|rest| rest.split('/').all(|c| !c.is_empty()));
            if !well_formed {
                return Err(format!(
                    "Invalid Datatree, malformed path {path:?} (not absolute, or an empty component)"
                ));
            }
            let parent = path::parent(k);
            if !self.tree.nodes.contains_key(key(parent)) {
                return Err(format!(
                    "Invalid Datatree, unable to find parent {parent} of path {path}"
                ));
            }
        }
        if self.tree.nodes.contains_key(k) {
            return Err(format!("Invalid Datatree, path {path:?} appears twice"));
        }
        self.tree.acls.add_usage(node.acl);
        if k != "/" {
            self.tree.index_owner(k, node.stat.ephemeral_owner);
        }
        self.tree.insert_raw(k, node);
        Ok(())
    }

    /// Completes the load: data size, quota roots and stats nodes (`setupQuota`), unused ACL
    /// entries dropped, and the last processed zxid.
    pub fn finish(mut self, last_processed_zxid: i64) -> Result<DataTree, String> {
        if !self.tree.nodes.contains_key("/") {
            return Err("snapshot has no root node".to_owned());
        }
        self.tree.data_size = self.tree.full_data_size();
        self.setup_quota();
        self.tree.acls.purge_unused();
        self.tree.last_processed_zxid = last_processed_zxid;
        Ok(self.tree)
    }

    /// `setupQuota`: every leaf under /zookeeper/quota named zookeeper_limits marks a quota
    /// root, whose stats node is recomputed.
    fn setup_quota(&mut self) {
        let marker = format!("/{}", quota::LIMIT_NODE);
        let mut roots = Vec::new();
        let mut stack = vec![quota::QUOTA_ROOT.to_owned()];
        while let Some(p) = stack.pop() {
            let Some(n) = self.tree.nodes.get(p.as_str()) else {
                continue;
            };
            if n.children.is_empty() {
                if p.ends_with(&marker) {
                    let end = p.find(&marker).unwrap_or(p.len());
                    roots.push(p[quota::QUOTA_ROOT.len()..end].to_owned());
                }
                continue;
            }
            stack.extend(n.children.iter().map(|c| format!("{p}/{c}")));
        }
        roots.sort();
        for root in roots {
            self.tree.update_quota_for_path(&root);
            self.tree.quotas.add(&root);
        }
    }
}

/// What a create-family transaction asks for.
struct NewNode<'a> {
    path: &'a str,
    data: &'a Option<Bytes>,
    acl: &'a [Acl],
    /// The ephemeralOwner; `None` for a TTL out of range.
    owner: Option<i64>,
    parent_cversion: i32,
}

impl<'a> NewNode<'a> {
    /// The node a create, createContainer or createTTL transaction describes.
    fn of(body: &'a TxnBody, client_id: i64) -> Result<NewNode<'a>, Code> {
        let (path, data, acl, owner, parent_cversion) = match body {
            TxnBody::Create(_, t) => {
                let owner = if t.ephemeral { client_id } else { 0 };
                (&t.path, &t.data, &t.acl, Some(owner), t.parent_cversion)
            }
            TxnBody::CreateContainer(t) => (
                &t.path,
                &t.data,
                &t.acl,
                Some(node::CONTAINER_OWNER),
                t.parent_cversion,
            ),
            TxnBody::CreateTtl(t) => (
                &t.path,
                &t.data,
                &t.acl,
                node::ttl_owner(t.ttl),
                t.parent_cversion,
            ),
            _ => return Err(Code::Unimplemented),
        };
        Ok(NewNode {
            path,
            data,
            acl,
            owner,
            parent_cversion,
        })
    }
}

/// Triggers `watches` for an event on `path` and delivers it to the connections that may
/// read a node with `acl`, except `suppress`ed ones. Returns every connection triggered.
fn fire(
    watches: &mut WatchManager,
    path: &str,
    type_: i32,
    acl: &[Acl],
    suppress: Option<&BTreeSet<CnxnId>>,
    ctx: &mut Apply<'_>,
) -> BTreeSet<CnxnId> {
    let fired = watches.trigger(path);
    watch::deliver(
        &fired,
        suppress,
        type_,
        path,
        ctx.zxid,
        acl,
        ctx.can_read,
        ctx.events,
    );
    fired
}

/// ZooKeeper keeps the root under "" as well as "/".
fn key(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// `getNodeSize`: path length in UTF-16 units plus data bytes.
fn size_of(path: &str, data_len: usize) -> i64 {
    to_i64(java_len(path) + data_len)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn clamp_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Java's `s.substring(units)` counted in UTF-16 units; `None` where Java would throw or
/// would split a surrogate pair.
fn java_substring_from(s: &str, units: usize) -> Option<&str> {
    let mut seen = 0;
    for (i, c) in s.char_indices() {
        if seen == units {
            return Some(&s[i..]);
        }
        seen += c.len_utf16();
    }
    (seen == units).then_some("")
}

/// Sub-transactions a multi may carry.
fn allowed_in_multi(sub: &TxnBody) -> bool {
    matches!(
        sub,
        TxnBody::Create(..)
            | TxnBody::CreateTtl(_)
            | TxnBody::CreateContainer(_)
            | TxnBody::Delete(_)
            | TxnBody::DeleteContainer(_)
            | TxnBody::SetData(_)
            | TxnBody::Error(_)
            | TxnBody::Check(_)
    )
}

/// One quota dimension of `checkQuota`: warns past the soft limit, fails past the hard one.
fn exceeds(
    root: &str,
    what: &str,
    label: &str,
    new: i64,
    soft: i64,
    hard: i64,
) -> Result<(), Code> {
    let is_hard = hard > -1;
    let limit = if is_hard { hard } else { soft };
    if new <= limit {
        return Ok(());
    }
    let kind = if is_hard { "hard" } else { "soft" };
    log::warn!("Quota exceeded: {root} [current {what}={new}, {kind}{label}Limit={limit}]");
    if is_hard {
        Err(Code::QuotaExceeded)
    } else {
        Ok(())
    }
}

/// The `Code` for an error number a transaction carries; unknown numbers (never written by
/// zabd) become `SystemError`.
pub fn code_from_i32(value: i32) -> Code {
    Code::from_i32(value).unwrap_or_else(|| {
        log::warn!("Unknown error code {value} in an error txn");
        Code::SystemError
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::data::{perms, Id};
    use crate::jute::txn::{
        CheckVersionTxn, CloseSessionTxn, CreateContainerTxn, CreateSessionTxn, CreateTtlTxn,
        CreateTxn, DeleteTxn, ErrorTxn, SetAclTxn, SetDataTxn,
    };

    const SESSION: i64 = 0x100;

    /// Applies `body` at `zxid` (time = zxid * 10) for SESSION, every delivery allowed.
    fn run(tree: &mut DataTree, zxid: i64, body: TxnBody) -> (ProcessTxnResult, Vec<WatchEvent>) {
        run_as(tree, zxid, SESSION, body, &|_, _| true)
    }

    fn run_as(
        tree: &mut DataTree,
        zxid: i64,
        session: i64,
        body: TxnBody,
        can_read: &dyn Fn(CnxnId, &[Acl]) -> bool,
    ) -> (ProcessTxnResult, Vec<WatchEvent>) {
        let header = TxnHeader {
            client_id: session,
            cxid: 1,
            zxid,
            time: zxid * 10,
            type_: body.type_code(),
        };
        let mut events = Vec::new();
        let rc = tree.process_txn(&header, &body, can_read, &mut events);
        (rc, events)
    }

    fn create_txn(path: &str, data: &str, ephemeral: bool, parent_cversion: i32) -> CreateTxn {
        CreateTxn {
            path: path.to_owned(),
            data: Some(Bytes::copy_from_slice(data.as_bytes())),
            acl: Acl::open_unsafe(),
            ephemeral,
            parent_cversion,
        }
    }

    fn create(path: &str, data: &str) -> TxnBody {
        TxnBody::Create(op::CREATE2, create_txn(path, data, false, -1))
    }

    fn ephemeral(path: &str) -> TxnBody {
        TxnBody::Create(op::CREATE, create_txn(path, "", true, -1))
    }

    fn delete(path: &str) -> TxnBody {
        TxnBody::Delete(DeleteTxn {
            path: path.to_owned(),
        })
    }

    fn set_data(path: &str, data: &str, version: i32) -> TxnBody {
        TxnBody::SetData(SetDataTxn {
            path: path.to_owned(),
            data: Some(Bytes::copy_from_slice(data.as_bytes())),
            version,
        })
    }

    fn error(code: Code) -> TxnBody {
        TxnBody::Error(ErrorTxn { err: code.as_i32() })
    }

    fn ev(cnxn: CnxnId, type_: i32, path: &str, zxid: i64) -> WatchEvent {
        WatchEvent {
            cnxn,
            type_,
            path: path.to_owned(),
            zxid,
        }
    }

    fn data_of(tree: &DataTree, path: &str) -> String {
        String::from_utf8_lossy(tree.node(path).unwrap().data.as_deref().unwrap_or_default())
            .into_owned()
    }

    /// The digest computed from scratch, to check the incremental one.
    fn full_digest(tree: &DataTree) -> i64 {
        tree.nodes
            .iter()
            .fold(0i64, |acc, (p, n)| acc.wrapping_add(node::digest(p, n)))
    }

    /// Structural invariants every transaction must keep.
    fn assert_consistent(tree: &DataTree) {
        assert_eq!(
            tree.digest(),
            full_digest(tree),
            "incremental digest drifted"
        );
        for (p, n) in &tree.nodes {
            for c in &n.children {
                let child = if &**p == "/" {
                    format!("/{c}")
                } else {
                    format!("{p}/{c}")
                };
                assert!(
                    tree.nodes.contains_key(child.as_str()),
                    "{child} listed but missing"
                );
            }
            if &**p != "/" {
                let parent = tree.node(path::parent(p)).expect("parent exists");
                assert!(
                    parent.children.contains(path::name(p)),
                    "{p} not listed by its parent"
                );
            }
            match EphemeralType::of(n.stat.ephemeral_owner, tree.extended_types) {
                EphemeralType::Normal => {
                    assert!(tree
                        .ephemerals
                        .get(&n.stat.ephemeral_owner)
                        .is_some_and(|s| s.contains(&**p)))
                }
                EphemeralType::Container => assert!(tree.containers.contains(&**p)),
                EphemeralType::Ttl => assert!(tree.ttls.contains(&**p)),
                EphemeralType::Void => {}
            }
            assert!(
                n.acl == acl::OPEN_UNSAFE_REF || tree.acls.refs(n.acl) > 0,
                "{p} holds a dead ACL ref"
            );
        }
        let uses: usize = tree
            .acls
            .iter()
            .map(|(r, _)| usize::try_from(tree.acls.refs(r)).unwrap())
            .sum();
        let holders = tree
            .nodes
            .values()
            .filter(|n| n.acl != acl::OPEN_UNSAFE_REF)
            .count();
        assert_eq!(
            uses, holders,
            "ACL reference counts disagree with the nodes"
        );
    }

    #[test]
    fn fresh_tree_matches_zookeeper() {
        let tree = DataTree::new();
        assert_eq!(tree.node_count(), 5);
        assert_eq!(tree.approximate_data_size(), 44);
        assert_eq!(tree.count_descendants("/"), Some(3));
        assert_eq!(tree.count_descendants("/zookeeper"), Some(2));
        assert_eq!(tree.count_descendants("/nope"), None);
        let root = tree.stat("/").unwrap();
        assert_eq!(
            (
                root.cversion,
                root.num_children,
                root.data_length,
                root.pzxid
            ),
            (-1, 1, 0, 0)
        );
        assert_eq!(tree.stat("").unwrap(), root);
        let zk = tree.stat("/zookeeper").unwrap();
        assert_eq!((zk.cversion, zk.num_children), (-2, 2));
        assert_eq!(
            tree.children("/zookeeper").unwrap(),
            vec!["config", "quota"]
        );
        let config = tree.node("/zookeeper/config").unwrap();
        assert_eq!(tree.acl(config), Acl::read_unsafe().as_slice());
        assert_eq!(tree.stat("/zookeeper/config").unwrap().aversion, -1);
        assert_eq!(config.data, Some(Bytes::new()));
        assert_eq!(
            tree.acl(tree.node("/zookeeper/quota").unwrap()),
            Acl::open_unsafe().as_slice()
        );
        assert_eq!(tree.node("/").unwrap().acl, -1);
        assert_eq!(
            tree.acl_cache().iter().map(|(r, _)| r).collect::<Vec<_>>(),
            vec![1]
        );
        // Computed with java.util.zip.CRC32 over ZooKeeper's DigestCalculator layout.
        assert_eq!(tree.digest(), 1_371_985_504);
        assert_eq!(tree.last_processed_zxid(), 0);
        assert_consistent(&tree);
    }

    #[test]
    fn create_stat_semantics() {
        let mut tree = DataTree::new();
        let (rc, events) = run(&mut tree, 5, create("/a", "x"));
        assert_eq!(
            (rc.type_, rc.err, rc.path.as_str()),
            (op::CREATE2, Code::Ok, "/a")
        );
        let stat = rc.stat.unwrap();
        assert_eq!(
            (stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime),
            (5, 5, 5, 50, 50)
        );
        assert_eq!(
            (stat.version, stat.cversion, stat.aversion, stat.data_length),
            (0, 0, 0, 1)
        );
        assert!(events.is_empty());
        let root = tree.node("/").unwrap();
        assert_eq!((root.stat.cversion, root.stat.pzxid), (1, 5));
        assert_eq!(tree.stat("/").unwrap().cversion, 0);
        // Java: CRC32 sums of "" (cversion 1, pzxid 5), "/zookeeper", and "/a".
        assert_eq!(tree.digest(), 3_375_418_929);
        assert_eq!(tree.last_processed_zxid(), 5);
        assert_eq!(tree.approximate_data_size(), 44 + 2 + 1);
        // A plain create reports no stat.
        let (rc, _) = run(
            &mut tree,
            6,
            TxnBody::Create(op::CREATE, create_txn("/a/b", "", false, -1)),
        );
        assert_eq!((rc.type_, rc.err, rc.stat), (op::CREATE, Code::Ok, None));
        assert_eq!(tree.stat("/a").unwrap().pzxid, 6);
        assert_eq!(tree.stat("/a").unwrap().mzxid, 5);
        // NoNode for a missing parent.
        let (rc, _) = run(&mut tree, 7, create("/x/y", ""));
        assert_eq!(
            (rc.err, rc.path.as_str(), rc.stat),
            (Code::NoNode, "/x/y", None)
        );
        // Null data stays null.
        let body = TxnBody::Create(
            op::CREATE,
            CreateTxn {
                data: None,
                ..create_txn("/n", "", false, -1)
            },
        );
        run(&mut tree, 8, body);
        assert_eq!(tree.node("/n").unwrap().data, None);
        assert_eq!(tree.stat("/n").unwrap().data_length, 0);
        assert_eq!(tree.last_processed_zxid(), 8);
        assert_consistent(&tree);
    }

    #[test]
    fn sequential_parent_cversion_and_fuzzy_replay() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/p", ""));
        // parent_cversion from the txn (what prep computed), -1 meaning "current + 1".
        run(
            &mut tree,
            2,
            TxnBody::Create(op::CREATE, create_txn("/p/s0000000000", "", false, 1)),
        );
        assert_eq!(tree.node("/p").unwrap().stat.cversion, 1);
        run(
            &mut tree,
            3,
            TxnBody::Create(op::CREATE, create_txn("/p/s0000000001", "", false, -1)),
        );
        assert_eq!(tree.node("/p").unwrap().stat.cversion, 2);
        assert_eq!(tree.node("/p").unwrap().stat.pzxid, 3);
        // A replayed create with an older parent cversion does not move cversion or pzxid back.
        run(
            &mut tree,
            4,
            TxnBody::Create(op::CREATE, create_txn("/p/old", "", false, 1)),
        );
        let p = tree.node("/p").unwrap();
        assert_eq!((p.stat.cversion, p.stat.pzxid), (2, 3));
        assert_eq!(tree.stat("/p").unwrap().cversion, 2 * 2 - 3);
        // Deletes do not count in the stored cversion, only in the client view.
        run(&mut tree, 5, delete("/p/old"));
        assert_eq!(tree.node("/p").unwrap().stat.cversion, 2);
        assert_eq!(tree.stat("/p").unwrap().cversion, 2 * 2 - 2);
        // A create that hits an existing node (type create) still moves the parent forward.
        let (rc, _) = run(
            &mut tree,
            9,
            TxnBody::Create(op::CREATE, create_txn("/p/s0000000001", "", false, 7)),
        );
        assert_eq!(rc.err, Code::NodeExists);
        let p = tree.node("/p").unwrap();
        assert_eq!((p.stat.cversion, p.stat.pzxid), (7, 9));
        // create2 gets it too (ZooKeeper adjusts plain creates only, which can make a
        // restarted server hand out a sequential name twice).
        let (rc, _) = run(
            &mut tree,
            10,
            TxnBody::Create(op::CREATE2, create_txn("/p/s0000000001", "", false, 8)),
        );
        assert_eq!(rc.err, Code::NodeExists);
        let p = tree.node("/p").unwrap();
        assert_eq!((p.stat.cversion, p.stat.pzxid), (8, 10));
        assert_consistent(&tree);
    }

    #[test]
    fn delete_semantics() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/a", "data"));
        run(&mut tree, 2, create("/a/b", "xy"));
        let (rc, _) = run(&mut tree, 3, delete("/a/b"));
        assert_eq!(
            (rc.err, rc.path.as_str(), rc.stat),
            (Code::Ok, "/a/b", None)
        );
        assert!(tree.node("/a/b").is_none());
        let a = tree.stat("/a").unwrap();
        assert_eq!((a.pzxid, a.num_children, a.cversion), (3, 0, 2));
        // Replaying a delete of a missing child still moves the parent's pzxid forward...
        let (rc, _) = run(&mut tree, 7, delete("/a/gone"));
        assert_eq!(rc.err, Code::NoNode);
        assert_eq!(tree.stat("/a").unwrap().pzxid, 7);
        // ...but never backwards.
        let (rc, _) = run(&mut tree, 4, delete("/a/gone"));
        assert_eq!(rc.err, Code::NoNode);
        assert_eq!(tree.stat("/a").unwrap().pzxid, 7);
        assert_eq!(tree.last_processed_zxid(), 7);
        let (rc, _) = run(&mut tree, 8, delete("/x/y"));
        assert_eq!(rc.err, Code::NoNode);
        // The root is never deleted.
        let (rc, _) = run(&mut tree, 9, delete("/"));
        assert_eq!(rc.err, Code::BadArguments);
        assert!(tree.node("/").is_some());
        assert_eq!(tree.approximate_data_size(), 44 + 2 + 4);
        assert_consistent(&tree);
    }

    #[test]
    fn set_data_and_set_acl() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/a", "one"));
        let (rc, events) = run(&mut tree, 2, set_data("/a", "three", 1));
        let stat = rc.stat.unwrap();
        assert_eq!(
            (
                stat.version,
                stat.mzxid,
                stat.mtime,
                stat.czxid,
                stat.data_length
            ),
            (1, 2, 20, 1, 5)
        );
        assert!(events.is_empty());
        assert_eq!(data_of(&tree, "/a"), "three");
        assert_eq!(tree.approximate_data_size(), 44 + 2 + 5);
        let (rc, _) = run(&mut tree, 3, set_data("/b", "", 1));
        assert_eq!((rc.err, rc.path.as_str()), (Code::NoNode, "/b"));

        let digest_acl = vec![Acl::new(perms::ALL, "digest", "u:h")];
        let before = tree.acl_cache().len();
        let body = TxnBody::SetAcl(SetAclTxn {
            path: "/a".into(),
            acl: digest_acl.clone(),
            version: 4,
        });
        let (rc, events) = run(&mut tree, 4, body);
        assert_eq!(rc.stat.unwrap().aversion, 4);
        assert!(events.is_empty());
        assert_eq!(tree.acl(tree.node("/a").unwrap()), digest_acl.as_slice());
        // /a's old OPEN_ACL_UNSAFE entry lost its only user and went away.
        assert_eq!(tree.acl_cache().len(), before);
        let (rc, _) = run(
            &mut tree,
            5,
            TxnBody::SetAcl(SetAclTxn {
                path: "/b".into(),
                acl: digest_acl,
                version: 1,
            }),
        );
        assert_eq!(rc.err, Code::NoNode);
        let (rc, _) = run(
            &mut tree,
            6,
            TxnBody::Check(CheckVersionTxn {
                path: "/zzz".into(),
                version: 3,
            }),
        );
        assert_eq!((rc.err, rc.path.as_str()), (Code::Ok, "/zzz"));
        let (rc, _) = run(
            &mut tree,
            7,
            TxnBody::CreateSession(CreateSessionTxn { time_out: 3000 }),
        );
        assert_eq!(rc.err, Code::Ok);
        let (rc, _) = run(&mut tree, 8, error(Code::BadVersion));
        assert_eq!((rc.type_, rc.err), (op::ERROR, Code::BadVersion));
        assert_eq!(
            run(&mut tree, 9, TxnBody::Error(ErrorTxn { err: -9999 }))
                .0
                .err,
            Code::SystemError
        );
        assert_consistent(&tree);
    }

    #[test]
    fn multi_failure_layout() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/a", ""));
        let digest = tree.digest();
        let body = TxnBody::Multi(vec![
            create("/a/x", ""),
            TxnBody::Check(CheckVersionTxn {
                path: "/a".into(),
                version: 0,
            }),
            error(Code::BadVersion),
            error(Code::RuntimeInconsistency),
            set_data("/a", "v", 1),
        ]);
        let (rc, events) = run(&mut tree, 2, body);
        assert_eq!((rc.type_, rc.err), (op::MULTI, Code::BadVersion));
        let layout: Vec<(i32, Code)> = rc.multi.iter().map(|r| (r.type_, r.err)).collect();
        assert_eq!(
            layout,
            vec![
                (op::ERROR, Code::Ok),
                (op::ERROR, Code::Ok),
                (op::ERROR, Code::BadVersion),
                (op::ERROR, Code::RuntimeInconsistency),
                (op::ERROR, Code::RuntimeInconsistency),
            ]
        );
        assert!(events.is_empty());
        assert!(tree.node("/a/x").is_none());
        assert_eq!(tree.digest(), digest);
        assert_eq!(tree.last_processed_zxid(), 2);

        tree.add_watch("/a", 9, WatchKind::Child);
        let body = TxnBody::Multi(vec![
            create("/a/x", "1"),
            set_data("/a/x", "22", 1),
            TxnBody::Check(CheckVersionTxn {
                path: "/a/x".into(),
                version: 1,
            }),
            delete("/a/x"),
            TxnBody::Create(op::CREATE, create_txn("/a/y", "", false, -1)),
        ]);
        let (rc, events) = run(&mut tree, 3, body);
        assert_eq!(rc.err, Code::Ok);
        let layout: Vec<(i32, &str, bool)> = rc
            .multi
            .iter()
            .map(|r| (r.type_, r.path.as_str(), r.stat.is_some()))
            .collect();
        assert_eq!(
            layout,
            vec![
                (op::CREATE2, "/a/x", true),
                (op::SET_DATA, "/a/x", true),
                (op::CHECK, "/a/x", false),
                (op::DELETE, "/a/x", false),
                (op::CREATE, "/a/y", false),
            ]
        );
        // The child watch fired once, on the first change, with the multi's zxid.
        assert_eq!(
            events,
            vec![ev(9, event_type::NODE_CHILDREN_CHANGED, "/a", 3)]
        );
        assert_eq!(tree.children("/a").unwrap(), vec!["y"]);
        // A sub-txn failing at apply time is reported; the others still apply.
        let (rc, _) = run(
            &mut tree,
            4,
            TxnBody::Multi(vec![create("/a/y", ""), create("/a/z", "")]),
        );
        assert_eq!(rc.err, Code::NodeExists);
        assert!(tree.node("/a/z").is_some());
        // An op a multi may not hold stops processing there.
        let (rc, _) = run(
            &mut tree,
            5,
            TxnBody::Multi(vec![
                create("/a/w", ""),
                TxnBody::CreateSession(CreateSessionTxn { time_out: 1 }),
                create("/a/v", ""),
            ]),
        );
        assert_eq!(rc.multi.len(), 1);
        assert!(tree.node("/a/w").is_some() && tree.node("/a/v").is_none());
        assert_consistent(&tree);
    }

    #[test]
    fn close_session_deletes_ephemerals() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/e", ""));
        run(&mut tree, 2, ephemeral("/e/one"));
        run(&mut tree, 3, ephemeral("/e/two"));
        run_as(&mut tree, 4, 0x200, ephemeral("/e/other"), &|_, _| true);
        assert_eq!(tree.ephemerals(SESSION), vec!["/e/one", "/e/two"]);
        assert_eq!(tree.stat("/e/one").unwrap().ephemeral_owner, SESSION);
        assert_eq!(tree.ephemeral_count(), 3);
        assert_eq!(
            tree.ephemerals_with_prefix(SESSION, " / "),
            vec!["/e/one", "/e/two"]
        );
        assert_eq!(tree.ephemerals_with_prefix(SESSION, "/e/t"), vec!["/e/two"]);
        tree.add_watch("/e/one", 5, WatchKind::Data);
        tree.add_watch("/e", 5, WatchKind::Child);
        // The txn lists one path; the other is the session's too and goes as well.
        let body = TxnBody::CloseSession(Some(CloseSessionTxn {
            paths_to_delete: vec!["/e/one".into()],
        }));
        let (rc, events) = run(&mut tree, 6, body);
        assert_eq!(rc.err, Code::Ok);
        assert!(tree.node("/e/one").is_none() && tree.node("/e/two").is_none());
        assert_eq!(tree.ephemerals(SESSION), Vec::<String>::new());
        assert_eq!(tree.ephemerals(0x200), vec!["/e/other"]);
        assert_eq!(
            events,
            vec![
                ev(5, event_type::NODE_DELETED, "/e/one", 6),
                ev(5, event_type::NODE_CHILDREN_CHANGED, "/e", 6)
            ]
        );
        assert_eq!(tree.stat("/e").unwrap().pzxid, 6);
        // The pre-3.6 empty body deletes all of the session's ephemerals.
        run_as(&mut tree, 7, 0x200, TxnBody::CloseSession(None), &|_, _| {
            true
        });
        assert!(tree.node("/e/other").is_none());
        assert_eq!(tree.ephemeral_count(), 0);
        assert_eq!(tree.ephemerals_by_session().count(), 0);
        assert_consistent(&tree);
    }

    #[test]
    fn deleted_ephemeral_keeps_an_empty_session_entry() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, ephemeral("/e"));
        run(&mut tree, 2, delete("/e"));
        let sessions: Vec<(i64, Vec<&str>)> = tree.ephemerals_by_session().collect();
        assert_eq!(sessions, vec![(SESSION, vec![])]);
    }

    #[test]
    fn watches_fire_for_each_event_type() {
        let mut tree = DataTree::new();
        tree.add_watch("/a", 1, WatchKind::Data); // exists on a missing node
        tree.add_watch("/", 2, WatchKind::Child);
        let (_, events) = run(&mut tree, 1, create("/a", ""));
        assert_eq!(
            events,
            vec![
                ev(1, event_type::NODE_CREATED, "/a", 1),
                ev(2, event_type::NODE_CHILDREN_CHANGED, "/", 1)
            ]
        );
        // One-shot: nothing is left.
        assert_eq!(tree.watch_count(), 0);

        tree.add_watch("/a", 3, WatchKind::Data);
        let (_, events) = run(&mut tree, 2, set_data("/a", "x", 1));
        assert_eq!(events, vec![ev(3, event_type::NODE_DATA_CHANGED, "/a", 2)]);
        let (_, events) = run(&mut tree, 3, set_data("/a", "y", 2));
        assert!(events.is_empty());

        run(&mut tree, 4, create("/a/b", ""));
        tree.add_watch("/a/b", 4, WatchKind::Data);
        tree.add_watch("/a/b", 4, WatchKind::Child);
        tree.add_watch("/a/b", 5, WatchKind::Child);
        tree.add_watch("/a", 6, WatchKind::Child);
        tree.add_watch("/a", 7, WatchKind::Data);
        let (_, events) = run(&mut tree, 5, delete("/a/b"));
        assert_eq!(
            events,
            vec![
                ev(4, event_type::NODE_DELETED, "/a/b", 5),
                ev(5, event_type::NODE_DELETED, "/a/b", 5),
                ev(6, event_type::NODE_CHILDREN_CHANGED, "/a", 5),
            ]
        );
        // 7's data watch on the parent is untouched by a child's delete.
        assert!(tree.remove_watches("/a", 7, watcher_type::DATA, true));
        assert_eq!(tree.watch_count(), 1);
    }

    #[test]
    fn persistent_and_recursive_watches() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/a", ""));
        tree.add_watch("/a", 1, WatchKind::Persistent);
        tree.add_watch("/a", 2, WatchKind::PersistentRecursive);
        tree.add_watch("/a", 3, WatchKind::Data);
        tree.add_watch("/a", 3, WatchKind::PersistentRecursive);
        let (_, events) = run(&mut tree, 2, create("/a/b", ""));
        // Recursive watchers hear about the descendant's creation, never NodeChildrenChanged;
        // the persistent one gets the child event on /a.
        assert_eq!(
            events,
            vec![
                ev(2, event_type::NODE_CREATED, "/a/b", 2),
                ev(3, event_type::NODE_CREATED, "/a/b", 2),
                ev(1, event_type::NODE_CHILDREN_CHANGED, "/a", 2),
            ]
        );
        let (_, events) = run(&mut tree, 3, set_data("/a/b", "v", 1));
        assert_eq!(
            events,
            vec![
                ev(2, event_type::NODE_DATA_CHANGED, "/a/b", 3),
                ev(3, event_type::NODE_DATA_CHANGED, "/a/b", 3)
            ]
        );
        let (_, events) = run(&mut tree, 4, set_data("/a", "v", 1));
        assert_eq!(
            events,
            vec![
                ev(1, event_type::NODE_DATA_CHANGED, "/a", 4),
                ev(2, event_type::NODE_DATA_CHANGED, "/a", 4),
                ev(3, event_type::NODE_DATA_CHANGED, "/a", 4),
            ]
        );
        // 3's one-shot data watch is consumed; its recursive watch stays.
        assert!(!tree.remove_watches("/a", 3, watcher_type::DATA, true));
        assert!(tree.remove_watches("/a", 3, watcher_type::PERSISTENT_RECURSIVE, true));
        let (_, events) = run(&mut tree, 5, delete("/a/b"));
        assert_eq!(
            events,
            vec![
                ev(2, event_type::NODE_DELETED, "/a/b", 5),
                ev(3, event_type::NODE_DELETED, "/a/b", 5),
                ev(1, event_type::NODE_CHILDREN_CHANGED, "/a", 5),
            ]
        );
        // Persistent watches survive the watched node's deletion.
        let (_, events) = run(&mut tree, 6, delete("/a"));
        assert_eq!(
            events,
            vec![
                ev(1, event_type::NODE_DELETED, "/a", 6),
                ev(2, event_type::NODE_DELETED, "/a", 6),
                ev(3, event_type::NODE_DELETED, "/a", 6),
            ]
        );
        let (_, events) = run(&mut tree, 7, create("/a", ""));
        assert_eq!(events.len(), 3);
        // Removing persistent watches individually (3.9).
        assert!(tree.remove_watches("/a", 1, watcher_type::PERSISTENT, false));
        assert!(!tree.remove_watches("/a", 1, watcher_type::PERSISTENT, false));
        assert!(tree.remove_watches("/a", 2, watcher_type::ANY, false));
        tree.remove_cnxn(3);
        assert_eq!(tree.watch_count(), 0);
        let (_, events) = run(&mut tree, 8, create("/a/c", ""));
        assert!(events.is_empty());
    }

    #[test]
    fn unreadable_nodes_send_no_events() {
        let mut tree = DataTree::new();
        let secret = vec![Acl::new(perms::ALL, "digest", "u:h")];
        run(&mut tree, 1, create("/a", ""));
        tree.add_watch("/a", 1, WatchKind::PersistentRecursive);
        tree.add_watch("/a/s", 2, WatchKind::Data);
        // Connection 1 holds no digest id; 2 holds u:h.
        let can_read = |cnxn: CnxnId, acl: &[Acl]| {
            let ids = if cnxn == 2 {
                vec![Id::new("digest", "u:h")]
            } else {
                vec![]
            };
            acl::check(acl, perms::READ, &ids)
        };
        let body = TxnBody::Create(
            op::CREATE,
            CreateTxn {
                acl: secret,
                ..create_txn("/a/s", "", false, -1)
            },
        );
        let (_, events) = run_as(&mut tree, 2, SESSION, body, &can_read);
        assert_eq!(events, vec![ev(2, event_type::NODE_CREATED, "/a/s", 2)]);
        let (_, events) = run_as(&mut tree, 3, SESSION, set_data("/a/s", "x", 1), &can_read);
        assert!(events.is_empty());
        // The deleted node's ACL (before deletion) decides.
        let (_, events) = run_as(&mut tree, 4, SESSION, delete("/a/s"), &can_read);
        assert!(events.is_empty());
        let (_, events) = run_as(&mut tree, 5, SESSION, create("/a/open", ""), &can_read);
        assert_eq!(events, vec![ev(1, event_type::NODE_CREATED, "/a/open", 5)]);
        // A filtered one-shot watch is consumed all the same.
        tree.add_watch("/a/open", 1, WatchKind::Data);
        let body = TxnBody::SetAcl(SetAclTxn {
            path: "/a/open".into(),
            acl: vec![Acl::new(perms::ALL, "digest", "u:h")],
            version: 1,
        });
        run(&mut tree, 6, body);
        let (_, events) = run_as(
            &mut tree,
            7,
            SESSION,
            set_data("/a/open", "x", 1),
            &can_read,
        );
        assert!(events.is_empty());
        assert!(!tree.remove_watches("/a/open", 1, watcher_type::DATA, true));
    }

    #[test]
    fn set_watches_fires_missed_events() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/d", ""));
        run(&mut tree, 2, create("/c", ""));
        run(&mut tree, 10, set_data("/d", "new", 1));
        run(&mut tree, 11, create("/c/kid", ""));
        let w = SetWatches2 {
            relative_zxid: 5,
            data_watches: vec!["/d".into(), "/c".into(), "/gone".into()],
            exist_watches: vec!["/d".into(), "/missing".into()],
            child_watches: vec!["/c".into(), "/d".into(), "/gone".into()],
            persistent_watches: vec!["/p".into()],
            persistent_recursive_watches: vec!["/r".into()],
        };
        let mut events = Vec::new();
        tree.set_watches(5, &w, 9, &mut events);
        assert_eq!(
            events,
            vec![
                ev(9, event_type::NODE_DATA_CHANGED, "/d", -1),
                ev(9, event_type::NODE_DELETED, "/gone", -1),
                ev(9, event_type::NODE_CREATED, "/d", -1),
                ev(9, event_type::NODE_CHILDREN_CHANGED, "/c", -1),
                ev(9, event_type::NODE_DELETED, "/gone", -1),
            ]
        );
        // Re-armed: data on /c (mzxid 2 <= 5), exist on /missing, child on /d (pzxid 1 <= 5).
        assert!(tree.remove_watches("/c", 9, watcher_type::DATA, true));
        assert!(tree.remove_watches("/missing", 9, watcher_type::DATA, true));
        assert!(tree.remove_watches("/d", 9, watcher_type::CHILDREN, true));
        assert!(!tree.remove_watches("/d", 9, watcher_type::DATA, true));
        assert!(tree.remove_watches("/p", 9, watcher_type::PERSISTENT, true));
        assert!(tree
            .child_watches()
            .contains("/p", 9, Some(WatcherMode::Persistent)));
        assert!(tree.remove_watches("/r", 9, watcher_type::PERSISTENT_RECURSIVE, true));
        assert_eq!(tree.data_watches().len(), 4);
        assert_eq!(tree.child_watches().len(), 2);
        let (_, events) = run(&mut tree, 12, create("/missing", ""));
        assert_eq!(
            events,
            vec![ev(9, event_type::NODE_CREATED, "/missing", 12)]
        );
    }

    #[test]
    fn remove_watches_by_type() {
        let mut tree = DataTree::new();
        tree.add_watch("/x", 1, WatchKind::Data);
        tree.add_watch("/x", 1, WatchKind::Child);
        assert!(!tree.remove_watches("/x", 1, watcher_type::PERSISTENT, true));
        assert!(!tree.remove_watches("/x", 2, watcher_type::ANY, true));
        assert!(tree.remove_watches("/x", 1, watcher_type::CHILDREN, false));
        assert!(!tree.remove_watches("/x", 1, watcher_type::CHILDREN, true));
        assert!(tree.remove_watches("/x", 1, watcher_type::ANY, true));
        assert!(tree.remove_watches("/x", 1, watcher_type::ANY, false));
        assert!(!tree.remove_watches("/x", 1, watcher_type::ANY, false));
        assert!(!tree.remove_watches("/x", 1, 42, false));
        tree.add_watch("/y", 1, WatchKind::Data);
        tree.add_watch("/y", 2, WatchKind::Data);
        tree.remove_cnxn(1);
        assert_eq!(
            tree.data_watches().by_path(),
            vec![("/y".to_owned(), vec![2])]
        );
    }

    #[test]
    fn container_and_ttl_candidates() {
        let mut tree = DataTree::new();
        let container = |path: &str| {
            TxnBody::CreateContainer(CreateContainerTxn {
                path: path.into(),
                data: None,
                acl: Acl::open_unsafe(),
                parent_cversion: -1,
            })
        };
        let ttl = |path: &str, ttl: i64| {
            TxnBody::CreateTtl(CreateTtlTxn {
                path: path.into(),
                data: None,
                acl: Acl::open_unsafe(),
                parent_cversion: -1,
                ttl,
            })
        };
        let (rc, _) = run(&mut tree, 1, container("/used"));
        assert_eq!(rc.stat.unwrap().ephemeral_owner, 0);
        assert_eq!(tree.node("/used").unwrap().stat.ephemeral_owner, i64::MIN);
        run(&mut tree, 2, container("/never"));
        run(&mut tree, 3, container("/busy"));
        run(&mut tree, 4, create("/used/k", ""));
        run(&mut tree, 5, delete("/used/k"));
        run(&mut tree, 6, create("/busy/k", ""));
        let (rc, _) = run(&mut tree, 7, ttl("/t", 1000));
        assert_eq!(rc.stat.unwrap().ephemeral_owner, 0);
        assert_eq!(
            tree.node("/t").unwrap().stat.ephemeral_owner as u64,
            0xff00_0000_0000_03e8
        );
        run(&mut tree, 8, ttl("/tp", 1000));
        run(&mut tree, 9, create("/tp/k", ""));
        let (rc, _) = run(&mut tree, 10, ttl("/bad", 0));
        assert_eq!(rc.err, Code::BadArguments);
        assert_eq!(tree.containers(), vec!["/busy", "/never", "/used"]);
        assert_eq!(tree.ttls(), vec!["/t", "/tp"]);
        // /t was created at time 70: its TTL ends after 1070.
        assert_eq!(tree.container_candidates(1070, 10), vec!["/used"]);
        assert_eq!(tree.container_candidates(1071, 10), vec!["/t", "/used"]);
        assert_eq!(tree.container_candidates(1071, 1), vec!["/t"]);
        // Modifying a TTL node restarts its clock.
        run(&mut tree, 200, set_data("/t", "", 1));
        assert_eq!(tree.container_candidates(2500, 10), vec!["/used"]);
        assert_eq!(tree.container_candidates(3001, 10), vec!["/t", "/used"]);
        let (rc, _) = run(
            &mut tree,
            201,
            TxnBody::DeleteContainer(DeleteTxn {
                path: "/used".into(),
            }),
        );
        assert_eq!(rc.err, Code::Ok);
        assert_eq!(tree.containers(), vec!["/busy", "/never"]);
        assert_consistent(&tree);
        // Without extended types a TTL owner is an ordinary session id.
        tree.set_extended_types(false);
        assert!(tree.container_candidates(1 << 40, 10).is_empty());
    }

    /// Creates a quota on `path` as zkCli's setquota does.
    fn set_quota(tree: &mut DataTree, zxid: i64, path: &str, limits: &str) -> i64 {
        let mut z = zxid;
        let mut prefix = quota::QUOTA_ROOT.to_owned();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            prefix = format!("{prefix}/{part}");
            if tree.node(&prefix).is_none() {
                run(tree, z, create(&prefix, ""));
                z += 1;
            }
        }
        run(tree, z, create(&quota::limit_path(path), limits));
        run(
            tree,
            z + 1,
            create(&quota::stat_path(path), "count=0,bytes=0"),
        );
        z + 2
    }

    #[test]
    fn quota_stats_follow_the_subtree() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/q", "12345"));
        run(&mut tree, 2, create("/q/a", "xy"));
        let z = set_quota(&mut tree, 3, "/q", "count=3,bytes=100=;countHardLimit=4");
        // Creating the stats node recomputes it from the subtree.
        assert_eq!(
            data_of(&tree, "/zookeeper/quota/q/zookeeper_stats"),
            "count=2,bytes=7"
        );
        assert_eq!(tree.quota_root("/q/a/b"), Some("/q".to_owned()));
        assert_eq!(tree.quota_root("/qq"), None);
        run(&mut tree, z, create("/q/a/b", "abc"));
        assert_eq!(
            data_of(&tree, "/zookeeper/quota/q/zookeeper_stats"),
            "count=3,bytes=10"
        );
        run(&mut tree, z + 1, set_data("/q/a/b", "a", 1));
        assert_eq!(
            data_of(&tree, "/zookeeper/quota/q/zookeeper_stats"),
            "count=3,bytes=8"
        );
        run(&mut tree, z + 2, delete("/q/a/b"));
        assert_eq!(
            data_of(&tree, "/zookeeper/quota/q/zookeeper_stats"),
            "count=2,bytes=7"
        );
        // The stats rewrite touches neither the stats node's stat nor the data size.
        let stats_stat = tree.stat("/zookeeper/quota/q/zookeeper_stats").unwrap();
        assert_eq!(stats_stat.mzxid, stats_stat.czxid);

        // Hard count limit 4: two more nodes would be 4 (allowed), a third 5.
        assert_eq!(tree.check_quota("/q/n", 0, 1), Ok(()));
        run(&mut tree, z + 3, create("/q/n", ""));
        run(&mut tree, z + 4, create("/q/m", ""));
        assert_eq!(tree.check_quota("/q/o", 0, 1), Err(Code::QuotaExceeded));
        // Bytes only have a soft limit (100): exceeding it is allowed (and logged).
        assert_eq!(tree.check_quota("/q", 1000, 0), Ok(()));
        assert_eq!(tree.check_quota("/elsewhere", 1000, 1), Ok(()));
        // A byte hard limit.
        let z = set_quota(
            &mut tree,
            z + 5,
            "/h",
            "count=-1,bytes=-1=;byteHardLimit=10",
        );
        run(&mut tree, z, create("/h", "12345678"));
        assert_eq!(
            data_of(&tree, "/zookeeper/quota/h/zookeeper_stats"),
            "count=1,bytes=8"
        );
        assert_eq!(tree.check_quota("/h/x", 2, 1), Ok(()));
        assert_eq!(tree.check_quota("/h/x", 3, 1), Err(Code::QuotaExceeded));
        assert_eq!(tree.check_quota("/h", 3, 0), Err(Code::QuotaExceeded));
        assert_eq!(tree.check_quota("/h", -3, 0), Ok(()));
        // Deleting the limits node removes the quota.
        run(&mut tree, z + 1, delete(&quota::limit_path("/h")));
        assert_eq!(tree.quota_root("/h"), None);
        assert_eq!(tree.check_quota("/h", 3, 0), Ok(()));
        assert_consistent(&tree);
    }

    #[test]
    fn descendants_and_children() {
        let mut tree = DataTree::new();
        run(&mut tree, 1, create("/a", ""));
        run(&mut tree, 2, create("/a/b", ""));
        run(&mut tree, 3, create("/a/b/c", ""));
        run(&mut tree, 4, create("/a/d", ""));
        run(&mut tree, 5, create("/ab", ""));
        assert_eq!(tree.count_descendants("/a"), Some(3));
        assert_eq!(tree.count_descendants("/a/b/c"), Some(0));
        assert_eq!(tree.count_descendants("/"), Some(3 + 5));
        assert_eq!(tree.count_descendants(""), Some(1 + 3 + 5));
        assert_eq!(tree.children("/a").unwrap(), vec!["b", "d"]);
        assert_eq!(tree.children("/nope"), None);
        assert_eq!(tree.node_count(), 5 + 5);
    }

    #[test]
    fn snapshot_order_and_loading_round_trip() {
        let mut tree = DataTree::new();
        let digest_acl = vec![Acl::new(perms::ALL, "digest", "u:h")];
        run(&mut tree, 1, create("/b", "1"));
        run(&mut tree, 2, create("/a", "22"));
        run(
            &mut tree,
            3,
            TxnBody::Create(
                op::CREATE,
                CreateTxn {
                    acl: digest_acl.clone(),
                    ..create_txn("/a/x", "", false, -1)
                },
            ),
        );
        run(&mut tree, 4, ephemeral("/a/e"));
        let z = set_quota(&mut tree, 5, "/a", "count=10,bytes=100");
        run(&mut tree, z, set_data("/a", "333", 1));
        // A dead ACL entry that loading must purge.
        let mut paths = Vec::new();
        tree.for_each_depth_first(|p, _| paths.push(p.to_owned()));
        assert_eq!(
            paths,
            vec![
                "",
                "/a",
                "/a/e",
                "/a/x",
                "/b",
                "/zookeeper",
                "/zookeeper/config",
                "/zookeeper/quota",
                "/zookeeper/quota/a",
                "/zookeeper/quota/a/zookeeper_limits",
                "/zookeeper/quota/a/zookeeper_stats",
            ]
        );
        let mut loader = TreeLoader::new(true);
        for (r, acl) in tree.acl_cache().iter() {
            loader.acl(r, acl.to_vec());
        }
        loader.acl(99, vec![Acl::new(perms::READ, "ip", "1.2.3.4")]);
        let mut failed = None;
        tree.for_each_depth_first(|p, n| {
            if let Err(e) = loader.node(p, n.clone()) {
                failed = Some(e);
            }
        });
        assert_eq!(failed, None);
        let loaded = loader.finish(tree.last_processed_zxid()).unwrap();
        assert_eq!(loaded.digest(), tree.digest());
        assert_eq!(loaded.node_count(), tree.node_count());
        assert_eq!(loaded.ephemerals(SESSION), vec!["/a/e"]);
        assert_eq!(loaded.quota_root("/a/x"), Some("/a".to_owned()));
        assert_eq!(
            data_of(&loaded, "/zookeeper/quota/a/zookeeper_stats"),
            "count=3,bytes=3"
        );
        assert_eq!(
            loaded.acl_cache().iter().count(),
            tree.acl_cache().iter().count()
        );
        assert_eq!(loaded.last_processed_zxid(), tree.last_processed_zxid());
        for p in &paths {
            assert_eq!(loaded.stat(p), tree.stat(p), "{p}");
            assert_eq!(
                loaded.acl(loaded.node(p).unwrap()),
                tree.acl(tree.node(p).unwrap()),
                "{p}"
            );
        }
        assert_consistent(&loaded);
        // Parents must come first, and a root is required.
        let mut loader = TreeLoader::new(true);
        assert!(loader.node("/a/b", DataNode::default()).is_err());
        assert!(loader.finish(0).is_err());
    }

    /// H1: paths a snapshot repeats or that have an empty component are refused, so that the
    /// loaded tree's child lists and node map always agree.
    #[test]
    fn loader_refuses_repeated_and_malformed_paths() {
        let open = || DataNode::new(None, acl::OPEN_UNSAFE_REF, StatPersisted::default());
        let mut loader = TreeLoader::new(true);
        for p in ["", "/a", "/a/b"] {
            loader.node(p, open()).unwrap();
        }
        for bad in ["/a", "/", "", "//a", "/a//b", "/a/", "a", "/a/b/"] {
            let err = loader.node(bad, open()).unwrap_err();
            assert!(err.starts_with("Invalid Datatree"), "{bad:?}: {err}");
        }
        let tree = loader.finish(0).unwrap();
        assert_eq!(tree.node_count(), 3 + 1, "the root counts twice");
        assert_consistent(&tree);
    }

    #[test]
    fn digest_of_null_data_matches_java() {
        let stat = StatPersisted {
            czxid: 1,
            mzxid: 2,
            pzxid: 3,
            ctime: 4,
            mtime: 5,
            version: 6,
            cversion: 7,
            aversion: 8,
            ephemeral_owner: -9,
        };
        assert_eq!(
            node::digest("/n", &DataNode::new(None, 1, stat)),
            1_621_330_219
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create(u8, u8, bool),
        Delete(u8),
        Set(u8, u8),
        SetAcl(u8, bool),
        Close(u8),
        Multi(u8, u8, bool),
    }

    impl quickcheck::Arbitrary for Op {
        fn arbitrary(g: &mut quickcheck::Gen) -> Op {
            let n = |g: &mut quickcheck::Gen| u8::arbitrary(g) % 12;
            match u8::arbitrary(g) % 6 {
                0 => Op::Create(n(g), u8::arbitrary(g) % 4, bool::arbitrary(g)),
                1 => Op::Delete(n(g)),
                2 => Op::Set(n(g), u8::arbitrary(g) % 5),
                3 => Op::SetAcl(n(g), bool::arbitrary(g)),
                4 => Op::Close(u8::arbitrary(g) % 4),
                _ => Op::Multi(n(g), n(g), bool::arbitrary(g)),
            }
        }
    }

    /// Small node names: "/n3", "/n3/n7", ... so ops collide often.
    fn node_path(i: u8) -> String {
        if i < 4 {
            format!("/n{i}")
        } else {
            format!("/n{}/n{i}", i % 4)
        }
    }

    fn body_of(op: &Op) -> (i64, TxnBody) {
        match op {
            Op::Create(i, session, eph) => {
                // Only leaves may be ephemeral: the tree, like ZooKeeper's, leaves the
                // no-children-for-ephemerals rule to prep.
                let mut t = create_txn(&node_path(*i), "abc", *eph && *i >= 4, -1);
                if *session == 3 {
                    t.acl = vec![Acl::new(perms::ALL, "digest", "u:h")];
                }
                (i64::from(*session) + 1, TxnBody::Create(op::CREATE, t))
            }
            // Only leaves are deleted: prep refuses non-empty deletes, the tree does not check.
            Op::Delete(i) => (1, delete(&node_path(*i | 4))),
            Op::Set(i, len) => (
                1,
                set_data(&node_path(*i), &"x".repeat(usize::from(*len)), 1),
            ),
            Op::SetAcl(i, open) => {
                let acl = if *open {
                    Acl::open_unsafe()
                } else {
                    Acl::read_unsafe()
                };
                (
                    1,
                    TxnBody::SetAcl(SetAclTxn {
                        path: node_path(*i),
                        acl,
                        version: 1,
                    }),
                )
            }
            Op::Close(s) => (i64::from(*s) + 1, TxnBody::CloseSession(None)),
            Op::Multi(a, b, fail) => {
                let mut subs = vec![create(&node_path(*a), "m"), delete(&node_path(*b | 4))];
                if *fail {
                    subs.push(error(Code::NoNode));
                }
                (1, TxnBody::Multi(subs))
            }
        }
    }

    quickcheck::quickcheck! {
        fn random_txns_keep_the_tree_consistent(ops: Vec<Op>) -> bool {
            let mut tree = DataTree::new();
            let mut replay = DataTree::new();
            let mut all_events = (Vec::new(), Vec::new());
            tree.add_watch("/", 1, WatchKind::PersistentRecursive);
            replay.add_watch("/", 1, WatchKind::PersistentRecursive);
            for (i, op) in ops.iter().enumerate() {
                let (session, body) = body_of(op);
                let zxid = i64::try_from(i).unwrap() + 1;
                let (rc1, e1) = run_as(&mut tree, zxid, session, body.clone(), &|_, _| true);
                let (rc2, e2) = run_as(&mut replay, zxid, session, body, &|_, _| true);
                assert_eq!(rc1, rc2);
                all_events.0.extend(e1);
                all_events.1.extend(e2);
                assert_consistent(&tree);
            }
            assert_eq!(all_events.0, all_events.1);
            tree.digest() == replay.digest() && tree.approximate_data_size() == u64::try_from(tree.full_data_size()).unwrap()
        }
    }
}
