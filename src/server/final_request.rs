//! The read path (ZooKeeper's FinalRequestProcessor for requests that are not
//! transactions): reads run against the applied tree, with their ACL checks, and register
//! watches for the connection that asked.

use super::pipeline::ZooKeeperServer;
use super::{CnxnId, Output, SessionId};
use crate::jute::data::{perms, Acl, ClientInfo};
use crate::jute::proto::{watcher_type, xid, Code, MultiResult, Request, Response};
use crate::tree::{acl, WatchKind};
use bytes::Bytes;

impl ZooKeeperServer {
    pub(super) fn run_read(
        &mut self,
        arrival_ms: i64,
        cnxn: CnxnId,
        xid: i32,
        req: Request,
        out: &mut Vec<Output>,
    ) {
        let Some(session) = self.cnxns.get(&cnxn).and_then(|c| c.session) else {
            return;
        };
        let result = if matches!(req, Request::Ping) || self.sessions.is_active(session) {
            self.read(cnxn, session, &req, out)
        } else {
            Err(Code::SessionExpired)
        };
        let xid = if matches!(req, Request::Ping) {
            xid::PING
        } else {
            xid
        };
        match result {
            Ok(body) => self.reply(cnxn, xid, Code::Ok, body, arrival_ms, out),
            Err(code) => self.reply(cnxn, xid, code, Response::Empty, arrival_ms, out),
        }
    }

    fn check_read(&self, cnxn: CnxnId, acl: &[Acl], perm: i32) -> Result<(), Code> {
        let auth = self.cnxns.get(&cnxn).map_or(&[][..], |c| &c.auth[..]);
        if self.settings.prep.skip_acl || acl::check(acl, perm, auth) {
            Ok(())
        } else {
            Err(Code::NoAuth)
        }
    }

    /// ZooKeeper's FinalRequestProcessor for requests that are not transactions.
    fn read(
        &mut self,
        cnxn: CnxnId,
        session: SessionId,
        req: &Request,
        out: &mut Vec<Output>,
    ) -> Result<Response, Code> {
        match req {
            Request::Ping => Ok(Response::Empty),
            Request::Sync(r) => Ok(Response::Sync(r.path.clone())),
            Request::Exists(r) => {
                if r.path.contains('\0') {
                    return Err(Code::BadArguments);
                }
                if let Some(node) = self.tree.node(&r.path) {
                    self.check_read(cnxn, self.tree.acl(node), perms::READ)?;
                }
                if r.watch {
                    self.tree.add_watch(&r.path, cnxn, WatchKind::Data);
                }
                self.tree
                    .stat(&r.path)
                    .map(Response::Stat)
                    .ok_or(Code::NoNode)
            }
            Request::GetData(r) => {
                let (data, stat) = self.get_data(cnxn, &r.path, r.watch)?;
                Ok(Response::GetData(data, stat))
            }
            Request::GetChildren(r) => Ok(Response::Children(
                self.get_children(cnxn, &r.path, r.watch)?.0,
            )),
            Request::GetChildren2(r) => {
                let (children, stat) = self.get_children(cnxn, &r.path, r.watch)?;
                Ok(Response::Children2(children, stat))
            }
            Request::GetAcl(r) => self.get_acl(cnxn, &r.path),
            Request::GetAllChildrenNumber(r) => {
                let node = self.tree.node(&r.path).ok_or(Code::NoNode)?;
                self.check_read(cnxn, self.tree.acl(node), perms::READ)?;
                Ok(Response::Count(
                    self.tree.count_descendants(&r.path).unwrap_or(0),
                ))
            }
            Request::GetEphemerals(r) => Ok(Response::Paths(
                self.tree.ephemerals_with_prefix(session, &r.path),
            )),
            Request::SetWatches(w) | Request::SetWatches2(w) => {
                let mut events = Vec::new();
                self.tree.set_watches(w.relative_zxid, w, cnxn, &mut events);
                self.send_events(events, out);
                Ok(Response::Empty)
            }
            Request::CheckWatches(r) | Request::RemoveWatches(r) => {
                let dry_run = matches!(req, Request::CheckWatches(_));
                // WatcherType.fromInt throws, which ZooKeeper answers as a marshalling error.
                if !(watcher_type::CHILDREN..=watcher_type::PERSISTENT_RECURSIVE).contains(&r.type_)
                {
                    return Err(Code::MarshallingError);
                }
                if self.tree.remove_watches(&r.path, cnxn, r.type_, dry_run) {
                    Ok(Response::Empty)
                } else {
                    Err(Code::NoWatcher)
                }
            }
            Request::AddWatch(r) => {
                let kind = match r.mode {
                    0 => WatchKind::Persistent,
                    1 => WatchKind::PersistentRecursive,
                    _ => return Err(Code::MarshallingError),
                };
                self.tree.add_watch(&r.path, cnxn, kind);
                Ok(Response::AddWatch)
            }
            Request::WhoAmI => Ok(Response::WhoAmI(self.client_infos(cnxn))),
            Request::MultiRead(ops) => Ok(Response::Multi(self.multi_read(cnxn, ops))),
            // Writes, auth and sasl never reach here.
            _ => Err(Code::Unimplemented),
        }
    }

    fn get_data(
        &mut self,
        cnxn: CnxnId,
        path: &str,
        watch: bool,
    ) -> Result<(Option<Bytes>, crate::jute::data::Stat), Code> {
        let node = self.tree.node(path).ok_or(Code::NoNode)?;
        self.check_read(cnxn, self.tree.acl(node), perms::READ)?;
        let data = node.data.clone();
        if watch {
            self.tree.add_watch(path, cnxn, WatchKind::Data);
        }
        let stat = self.tree.stat(path).ok_or(Code::NoNode)?;
        Ok((data, stat))
    }

    fn get_children(
        &mut self,
        cnxn: CnxnId,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, crate::jute::data::Stat), Code> {
        let node = self.tree.node(path).ok_or(Code::NoNode)?;
        self.check_read(cnxn, self.tree.acl(node), perms::READ)?;
        if watch {
            self.tree.add_watch(path, cnxn, WatchKind::Child);
        }
        let children = self.tree.children(path).ok_or(Code::NoNode)?;
        let stat = self.tree.stat(path).ok_or(Code::NoNode)?;
        Ok((children, stat))
    }

    /// getACL needs READ or ADMIN; without ADMIN digest hashes are masked (CVE-2019-0201).
    fn get_acl(&self, cnxn: CnxnId, path: &str) -> Result<Response, Code> {
        let node = self.tree.node(path).ok_or(Code::NoNode)?;
        let node_acl = self.tree.acl(node);
        self.check_read(cnxn, node_acl, perms::READ | perms::ADMIN)?;
        let stat = self.tree.stat(path).ok_or(Code::NoNode)?;
        let shown = match self.check_read(cnxn, node_acl, perms::ADMIN) {
            Ok(()) => node_acl.to_vec(),
            Err(_) => acl::mask_digests(node_acl),
        };
        Ok(Response::GetAcl(shown, stat))
    }

    fn multi_read(&mut self, cnxn: CnxnId, ops: &[Request]) -> Vec<MultiResult> {
        ops.iter()
            .map(|sub| {
                let result = match sub {
                    Request::GetData(r) => self
                        .get_data(cnxn, &r.path, r.watch)
                        .map(|(d, s)| MultiResult::GetData(d, s)),
                    Request::GetChildren(r) => self
                        .get_children(cnxn, &r.path, r.watch)
                        .map(|(c, _)| MultiResult::GetChildren(c)),
                    _ => Err(Code::Unimplemented),
                };
                result.unwrap_or_else(MultiResult::Error)
            })
            .collect()
    }

    fn client_infos(&self, cnxn: CnxnId) -> Vec<ClientInfo> {
        let auth = self.cnxns.get(&cnxn).map_or(&[][..], |c| &c.auth[..]);
        auth.iter()
            .map(|id| {
                let user = match id.scheme.as_str() {
                    "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
                    "ip" => id.id.clone(),
                    _ => String::new(),
                };
                ClientInfo {
                    auth_scheme: id.scheme.clone(),
                    user,
                }
            })
            .collect()
    }
}
