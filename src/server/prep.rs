//! The prep stage (ZooKeeper's PrepRequestProcessor): validates a write against the tree plus
//! the changes of writes already prepared but not yet applied ("outstanding changes"), and turns
//! it into a transaction body. Failures become error transactions, as in ZooKeeper: they take a
//! zxid and travel through the log, which keeps every session's replies in order.

use crate::jute::data::{perms, Acl, Id, StatPersisted};
use crate::jute::proto::{create_mode, op, Code, Request};
use crate::jute::txn::{
    CheckVersionTxn, CloseSessionTxn, CreateContainerTxn, CreateSessionTxn, CreateTtlTxn,
    CreateTxn, DeleteTxn, ErrorTxn, SetAclTxn, SetDataTxn, TxnBody,
};
use crate::session::{SessionId, SessionTracker};
use crate::tree::node::{ttl_owner, EphemeralType, CONTAINER_OWNER};
use crate::tree::{acl, path, DataTree};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The latest prepared state of one path.
#[derive(Clone, Debug)]
pub(super) struct ChangeRecord {
    zxid: i64,
    /// `None`: the path is deleted by an outstanding transaction.
    stat: Option<StatPersisted>,
    child_count: i32,
    acl: Vec<Acl>,
    data_len: i64,
}

/// Changes of prepared transactions not yet applied to the tree.
#[derive(Debug, Default)]
pub(super) struct Outstanding {
    latest: HashMap<String, ChangeRecord>,
    order: VecDeque<(i64, String)>,
}

/// Bounds a multi's undo log: one multi changes at most two records per sub-op.
type UndoLog = Vec<(String, Option<ChangeRecord>)>;

impl Outstanding {
    /// Forgets the records of every transaction up to `zxid`, now that the tree has them.
    pub fn applied(&mut self, zxid: i64) {
        while let Some((z, _)) = self.order.front() {
            if *z > zxid {
                break;
            }
            let (_, path) = self.order.pop_front().expect("front exists");
            if self.latest.get(&path).is_some_and(|r| r.zxid <= zxid) {
                self.latest.remove(&path);
            }
        }
    }

    fn record(&self, tree: &DataTree, path: &str) -> Option<ChangeRecord> {
        if let Some(r) = self.latest.get(path) {
            return r.stat.is_some().then(|| r.clone());
        }
        let node = tree.node(path)?;
        Some(ChangeRecord {
            zxid: -1,
            stat: Some(node.stat.clone()),
            child_count: i32::try_from(node.children.len()).unwrap_or(i32::MAX),
            acl: tree.acl(node).to_vec(),
            data_len: node.data.as_ref().map_or(0, |d| d.len() as i64),
        })
    }

    fn add(&mut self, path: &str, record: ChangeRecord, undo: &mut Option<UndoLog>) {
        if let Some(log) = undo {
            log.push((path.to_owned(), self.latest.get(path).cloned()));
        }
        self.order.push_back((record.zxid, path.to_owned()));
        self.latest.insert(path.to_owned(), record);
    }

    /// Undoes a failed multi's records (all carry `zxid`), newest first.
    fn rollback(&mut self, zxid: i64, undo: UndoLog) {
        for (path, previous) in undo.into_iter().rev() {
            match previous {
                Some(r) => self.latest.insert(path, r),
                None => self.latest.remove(&path),
            };
        }
        self.order.retain(|(z, _)| *z != zxid);
    }

    /// The session's ephemerals as they will be once every outstanding change is applied.
    fn ephemerals(&self, tree: &DataTree, session: SessionId) -> BTreeSet<String> {
        let mut set: BTreeSet<String> = tree.ephemerals(session).into_iter().collect();
        for (path, r) in &self.latest {
            match &r.stat {
                None => {
                    set.remove(path);
                }
                Some(s) if s.ephemeral_owner == session => {
                    set.insert(path.clone());
                }
                Some(_) => {}
            }
        }
        set
    }
}

/// Settings that change what prep accepts.
#[derive(Clone, Debug, Default)]
pub struct PrepSettings {
    pub extended_types: bool,
    pub enforce_quota: bool,
    pub skip_acl: bool,
    pub reconfig_enabled: bool,
}

/// One request being prepared.
pub(super) struct Prep<'a> {
    pub tree: &'a DataTree,
    pub outstanding: &'a mut Outstanding,
    pub sessions: &'a SessionTracker,
    pub settings: &'a PrepSettings,
    pub session_id: SessionId,
    pub auth: &'a [Id],
    pub zxid: i64,
    pub time_ms: i64,
}

impl Prep<'_> {
    /// Prepares `req` into a transaction: (header type, body).
    pub fn prepare(&mut self, req: &Request) -> (i32, TxnBody) {
        if let Request::Multi(ops) = req {
            return (op::MULTI, self.prepare_multi(ops));
        }
        let mut no_undo = None;
        match self.prepare_one(req, &mut no_undo) {
            Ok(body) => (body.type_code(), body),
            Err(code) => (op::ERROR, error(code)),
        }
    }

    /// A multi is atomic: after the first failure the remaining ops become
    /// RUNTIMEINCONSISTENCY errors and the failed multi's change records are rolled back.
    fn prepare_multi(&mut self, ops: &[Request]) -> TxnBody {
        let mut undo = Some(UndoLog::new());
        let mut failed = false;
        let mut subs = Vec::with_capacity(ops.len());
        for sub in ops {
            if failed {
                subs.push(error(Code::RuntimeInconsistency));
                continue;
            }
            match self.prepare_one(sub, &mut undo) {
                Ok(body) => subs.push(body),
                Err(code) => {
                    failed = true;
                    subs.push(error(code));
                    let log = undo.take().unwrap_or_default();
                    self.outstanding.rollback(self.zxid, log);
                }
            }
        }
        TxnBody::Multi(subs)
    }

    fn prepare_one(&mut self, req: &Request, undo: &mut Option<UndoLog>) -> Result<TxnBody, Code> {
        match req {
            Request::Create(code, r) => {
                self.create(*code, &r.path, &r.data, &r.acl, r.flags, -1, undo)
            }
            Request::CreateTtl(r) => self.create(
                op::CREATE_TTL,
                &r.path,
                &r.data,
                &r.acl,
                r.flags,
                r.ttl,
                undo,
            ),
            Request::Delete(r) => self.delete(&r.path, r.version, undo),
            Request::SetData(r) => self.set_data(&r.path, &r.data, r.version, undo),
            Request::SetAcl(r) => self.set_acl(&r.path, &r.acl, r.version, undo),
            Request::Check(r) => self.check(&r.path, r.version),
            Request::CloseSession => Ok(self.close_session(undo)),
            Request::Reconfig(_) => Err(self.reconfig()),
            // Only the ops above are writes; the pipeline never sends others here.
            _ => Err(Code::Unimplemented),
        }
    }

    fn check_session(&self) -> Result<(), Code> {
        if self.sessions.is_active(self.session_id) {
            Ok(())
        } else {
            Err(Code::SessionExpired)
        }
    }

    fn check_acl(&self, acl: &[Acl], perm: i32) -> Result<(), Code> {
        if self.settings.skip_acl || acl::check(acl, perm, self.auth) {
            Ok(())
        } else {
            Err(Code::NoAuth)
        }
    }

    fn record(&self, path: &str) -> Result<ChangeRecord, Code> {
        self.outstanding.record(self.tree, path).ok_or(Code::NoNode)
    }

    fn stat_of(record: &ChangeRecord) -> &StatPersisted {
        record.stat.as_ref().expect("records handed out are live")
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        code: i32,
        path_in: &str,
        data: &Option<Bytes>,
        acl_in: &[Acl],
        flags: i32,
        ttl: i64,
        undo: &mut Option<UndoLog>,
    ) -> Result<TxnBody, Code> {
        if !(create_mode::PERSISTENT..=create_mode::PERSISTENT_SEQUENTIAL_WITH_TTL).contains(&flags)
        {
            return Err(Code::BadArguments);
        }
        let is_ttl = matches!(
            flags,
            create_mode::PERSISTENT_WITH_TTL | create_mode::PERSISTENT_SEQUENTIAL_WITH_TTL
        );
        if is_ttl && !self.settings.extended_types {
            return Err(Code::Unimplemented);
        }
        let ttl_ok = if is_ttl {
            ttl_owner(ttl).is_some()
        } else {
            ttl < 0
        };
        if !ttl_ok {
            return Err(Code::BadArguments);
        }
        self.check_session()?;
        if !path_in.contains('/') || path_in.contains('\0') {
            return Err(Code::BadArguments);
        }
        let parent_path = path::parent(path_in);
        let fixed_acl = acl::fixup(acl_in, self.auth)?;
        let parent = self.record(parent_path)?;
        self.check_acl(&parent.acl, perms::CREATE)?;
        let parent_stat = Self::stat_of(&parent).clone();
        let sequential = matches!(
            flags,
            create_mode::PERSISTENT_SEQUENTIAL
                | create_mode::EPHEMERAL_SEQUENTIAL
                | create_mode::PERSISTENT_SEQUENTIAL_WITH_TTL
        );
        let path = if sequential {
            format!("{path_in}{:010}", parent_stat.cversion)
        } else {
            path_in.to_owned()
        };
        path::validate(&path)?;
        if self.outstanding.record(self.tree, &path).is_some() {
            return Err(Code::NodeExists);
        }
        let parent_type =
            EphemeralType::of(parent_stat.ephemeral_owner, self.settings.extended_types);
        if parent_type == EphemeralType::Normal {
            return Err(Code::NoChildrenForEphemerals);
        }
        let new_cversion = parent_stat.cversion.wrapping_add(1);
        let data_len = data.as_ref().map_or(0, |d| d.len() as i64);
        if self.settings.enforce_quota {
            self.tree.check_quota(&path, data_len, 1)?;
        }
        let ephemeral = matches!(
            flags,
            create_mode::EPHEMERAL | create_mode::EPHEMERAL_SEQUENTIAL
        );
        let owner = if flags == create_mode::CONTAINER {
            CONTAINER_OWNER
        } else if is_ttl {
            ttl_owner(ttl).expect("ttl validated above")
        } else if ephemeral {
            self.session_id
        } else {
            0
        };
        let body = match code {
            op::CREATE_CONTAINER => TxnBody::CreateContainer(CreateContainerTxn {
                path: path.clone(),
                data: data.clone(),
                acl: fixed_acl.clone(),
                parent_cversion: new_cversion,
            }),
            op::CREATE_TTL => TxnBody::CreateTtl(CreateTtlTxn {
                path: path.clone(),
                data: data.clone(),
                acl: fixed_acl.clone(),
                parent_cversion: new_cversion,
                ttl,
            }),
            _ => TxnBody::Create(
                code,
                CreateTxn {
                    path: path.clone(),
                    data: data.clone(),
                    acl: fixed_acl.clone(),
                    ephemeral,
                    parent_cversion: new_cversion,
                },
            ),
        };
        let mut parent = parent;
        parent.zxid = self.zxid;
        parent.child_count += 1;
        if let Some(s) = parent.stat.as_mut() {
            s.cversion = new_cversion;
            s.pzxid = self.zxid;
        }
        self.outstanding.add(parent_path, parent, undo);
        let stat = StatPersisted {
            czxid: self.zxid,
            mzxid: self.zxid,
            ctime: self.time_ms,
            mtime: self.time_ms,
            ephemeral_owner: owner,
            pzxid: self.zxid,
            ..StatPersisted::default()
        };
        let node = ChangeRecord {
            zxid: self.zxid,
            stat: Some(stat),
            child_count: 0,
            acl: fixed_acl,
            data_len,
        };
        self.outstanding.add(&path, node, undo);
        Ok(body)
    }

    fn delete(
        &mut self,
        path: &str,
        version: i32,
        undo: &mut Option<UndoLog>,
    ) -> Result<TxnBody, Code> {
        self.check_session()?;
        let parent_path = self.parent_for_delete(path)?;
        let parent = self.record(parent_path)?;
        self.check_acl(&parent.acl, perms::DELETE)?;
        let node = self.record(path)?;
        check_version(Self::stat_of(&node).version, version)?;
        if node.child_count > 0 {
            return Err(Code::NotEmpty);
        }
        self.remove_records(path, parent_path, parent, undo);
        Ok(TxnBody::Delete(DeleteTxn {
            path: path.to_owned(),
        }))
    }

    /// deleteContainer (issued by the container manager, not by clients): only empty
    /// containers and TTL nodes.
    pub fn delete_container(&mut self, path: &str) -> (i32, TxnBody) {
        let mut no_undo = None;
        match self.try_delete_container(path, &mut no_undo) {
            Ok(body) => (op::DELETE_CONTAINER, body),
            Err(code) => (op::ERROR, error(code)),
        }
    }

    fn try_delete_container(
        &mut self,
        path: &str,
        undo: &mut Option<UndoLog>,
    ) -> Result<TxnBody, Code> {
        let parent_path = self.parent_for_delete(path)?;
        let node = self.record(path)?;
        if node.child_count > 0 {
            return Err(Code::NotEmpty);
        }
        let kind = EphemeralType::of(
            Self::stat_of(&node).ephemeral_owner,
            self.settings.extended_types,
        );
        if kind == EphemeralType::Normal {
            return Err(Code::BadVersion);
        }
        let parent = self.record(parent_path)?;
        self.remove_records(path, parent_path, parent, undo);
        Ok(TxnBody::DeleteContainer(DeleteTxn {
            path: path.to_owned(),
        }))
    }

    fn parent_for_delete<'p>(&self, path: &'p str) -> Result<&'p str, Code> {
        if !path.contains('/') || path.contains('\0') || path::is_special(path) {
            return Err(Code::BadArguments);
        }
        Ok(path::parent(path))
    }

    fn remove_records(
        &mut self,
        path: &str,
        parent_path: &str,
        mut parent: ChangeRecord,
        undo: &mut Option<UndoLog>,
    ) {
        parent.zxid = self.zxid;
        parent.child_count -= 1;
        if let Some(s) = parent.stat.as_mut() {
            s.pzxid = self.zxid;
        }
        self.outstanding.add(parent_path, parent, undo);
        let gone = ChangeRecord {
            zxid: self.zxid,
            stat: None,
            child_count: -1,
            acl: Vec::new(),
            data_len: 0,
        };
        self.outstanding.add(path, gone, undo);
    }

    fn set_data(
        &mut self,
        path: &str,
        data: &Option<Bytes>,
        version: i32,
        undo: &mut Option<UndoLog>,
    ) -> Result<TxnBody, Code> {
        self.check_session()?;
        path::validate(path)?;
        let mut node = self.record(path)?;
        self.check_acl(&node.acl, perms::WRITE)?;
        let data_len = data.as_ref().map_or(0, |d| d.len() as i64);
        if self.settings.enforce_quota {
            self.tree.check_quota(path, data_len - node.data_len, 0)?;
        }
        let new_version = check_version(Self::stat_of(&node).version, version)?;
        node.zxid = self.zxid;
        node.data_len = data_len;
        if let Some(s) = node.stat.as_mut() {
            s.version = new_version;
            s.mtime = self.time_ms;
            s.mzxid = self.zxid;
        }
        self.outstanding.add(path, node, undo);
        Ok(TxnBody::SetData(SetDataTxn {
            path: path.to_owned(),
            data: data.clone(),
            version: new_version,
        }))
    }

    fn set_acl(
        &mut self,
        path: &str,
        acl_in: &[Acl],
        version: i32,
        undo: &mut Option<UndoLog>,
    ) -> Result<TxnBody, Code> {
        self.check_session()?;
        path::validate(path)?;
        let fixed = acl::fixup(acl_in, self.auth)?;
        let mut node = self.record(path)?;
        self.check_acl(&node.acl, perms::ADMIN)?;
        let new_aversion = check_version(Self::stat_of(&node).aversion, version)?;
        node.zxid = self.zxid;
        node.acl = fixed.clone();
        if let Some(s) = node.stat.as_mut() {
            s.aversion = new_aversion;
        }
        self.outstanding.add(path, node, undo);
        Ok(TxnBody::SetAcl(SetAclTxn {
            path: path.to_owned(),
            acl: fixed,
            version: new_aversion,
        }))
    }

    fn check(&mut self, path: &str, version: i32) -> Result<TxnBody, Code> {
        self.check_session()?;
        path::validate(path)?;
        let node = self.record(path)?;
        self.check_acl(&node.acl, perms::READ)?;
        let v = check_version(Self::stat_of(&node).version, version)?;
        Ok(TxnBody::Check(CheckVersionTxn {
            path: path.to_owned(),
            version: v,
        }))
    }

    /// closeSession lists the ephemerals it will delete, counting outstanding creates and
    /// deletes, so that replaying the log deletes exactly those.
    fn close_session(&mut self, undo: &mut Option<UndoLog>) -> TxnBody {
        let paths = self.outstanding.ephemerals(self.tree, self.session_id);
        for p in &paths {
            let parent_path = path::parent(p);
            if let Ok(mut parent) = self.record(parent_path) {
                parent.zxid = self.zxid;
                if let Some(s) = parent.stat.as_mut() {
                    s.pzxid = self.zxid;
                }
                self.outstanding.add(parent_path, parent, undo);
            }
            let gone = ChangeRecord {
                zxid: self.zxid,
                stat: None,
                child_count: 0,
                acl: Vec::new(),
                data_len: 0,
            };
            self.outstanding.add(p, gone, undo);
        }
        TxnBody::CloseSession(Some(CloseSessionTxn {
            paths_to_delete: paths.into_iter().collect(),
        }))
    }

    /// createSession: the tracker already holds the session; the txn makes it durable.
    pub fn create_session(timeout_ms: i32) -> (i32, TxnBody) {
        (
            op::CREATE_SESSION,
            TxnBody::CreateSession(CreateSessionTxn {
                time_out: timeout_ms,
            }),
        )
    }

    /// A standalone server has no quorum to reconfigure.
    fn reconfig(&self) -> Code {
        if self.settings.reconfig_enabled {
            Code::Unimplemented
        } else {
            Code::ReconfigDisabled
        }
    }
}

fn error(code: Code) -> TxnBody {
    TxnBody::Error(ErrorTxn { err: code.as_i32() })
}

/// `PrepRequestProcessor.checkAndIncVersion`: -1 matches any version; versions wrap to 0.
fn check_version(current: i32, expected: i32) -> Result<i32, Code> {
    if expected != -1 && expected != current {
        return Err(Code::BadVersion);
    }
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_check_and_wrap() {
        assert_eq!(check_version(3, -1), Ok(4));
        assert_eq!(check_version(3, 3), Ok(4));
        assert_eq!(check_version(3, 2), Err(Code::BadVersion));
        assert_eq!(check_version(-2, -1), Ok(0));
        assert_eq!(check_version(i32::MAX, -1), Ok(i32::MIN));
    }
}
