//! Records of jute module `org.apache.zookeeper.proto`: the client protocol. Also the opcode
//! and error-code numbers (`ZooDefs.OpCode`, `KeeperException.Code`), and [`Request`] /
//! [`Response`], the decoded forms of every client operation.

use super::data::{Acl, ClientInfo, Stat};
use super::{jute_record, DecodeError, Jute, Reader};
use bytes::{BufMut, Bytes};

/// `ZooDefs.OpCode`.
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// Special xids (`ClientCnxn`).
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// `KeeperException.Code`: the numbers clients see in `ReplyHeader.err`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    SystemError = -1,
    RuntimeInconsistency = -2,
    DataInconsistency = -3,
    ConnectionLoss = -4,
    MarshallingError = -5,
    Unimplemented = -6,
    OperationTimeout = -7,
    BadArguments = -8,
    UnknownSession = -12,
    NewConfigNoQuorum = -13,
    ReconfigInProgress = -14,
    ApiError = -100,
    NoNode = -101,
    NoAuth = -102,
    BadVersion = -103,
    NoChildrenForEphemerals = -108,
    NodeExists = -110,
    NotEmpty = -111,
    SessionExpired = -112,
    InvalidCallback = -113,
    InvalidAcl = -114,
    AuthFailed = -115,
    SessionMoved = -118,
    NotReadOnly = -119,
    EphemeralOnLocalSession = -120,
    NoWatcher = -121,
    ReconfigDisabled = -123,
    SessionClosedRequireSaslAuth = -124,
    QuotaExceeded = -125,
    ThrottledOp = -127,
}

impl Code {
    /// Every code, for mapping numbers back.
    pub const ALL: [Code; 31] = [
        Code::Ok,
        Code::SystemError,
        Code::RuntimeInconsistency,
        Code::DataInconsistency,
        Code::ConnectionLoss,
        Code::MarshallingError,
        Code::Unimplemented,
        Code::OperationTimeout,
        Code::BadArguments,
        Code::UnknownSession,
        Code::NewConfigNoQuorum,
        Code::ReconfigInProgress,
        Code::ApiError,
        Code::NoNode,
        Code::NoAuth,
        Code::BadVersion,
        Code::NoChildrenForEphemerals,
        Code::NodeExists,
        Code::NotEmpty,
        Code::SessionExpired,
        Code::InvalidCallback,
        Code::InvalidAcl,
        Code::AuthFailed,
        Code::SessionMoved,
        Code::NotReadOnly,
        Code::EphemeralOnLocalSession,
        Code::NoWatcher,
        Code::ReconfigDisabled,
        Code::SessionClosedRequireSaslAuth,
        Code::QuotaExceeded,
        Code::ThrottledOp,
    ];

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code with this number, `None` for numbers ZooKeeper does not define.
    pub fn from_i32(n: i32) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_i32() == n)
    }
}

/// `Watcher.Event.EventType`.
pub mod event_type {
    pub const NONE: i32 = -1;
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    pub const DATA_WATCH_REMOVED: i32 = 5;
    pub const CHILD_WATCH_REMOVED: i32 = 6;
    pub const PERSISTENT_WATCH_REMOVED: i32 = 7;
}

/// `Watcher.Event.KeeperState`.
pub mod keeper_state {
    pub const DISCONNECTED: i32 = 0;
    pub const SYNC_CONNECTED: i32 = 3;
    pub const AUTH_FAILED: i32 = 4;
    pub const CONNECTED_READ_ONLY: i32 = 5;
    pub const EXPIRED: i32 = -112;
    pub const CLOSED: i32 = 7;
}

/// `Watcher.WatcherType` (checkWatches / removeWatches).
pub mod watcher_type {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

/// `AddWatchMode`.
pub mod add_watch_mode {
    pub const PERSISTENT: i32 = 0;
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

/// `CreateMode` flags.
pub mod create_mode {
    pub const PERSISTENT: i32 = 0;
    pub const EPHEMERAL: i32 = 1;
    pub const PERSISTENT_SEQUENTIAL: i32 = 2;
    pub const EPHEMERAL_SEQUENTIAL: i32 = 3;
    pub const CONTAINER: i32 = 4;
    pub const PERSISTENT_WITH_TTL: i32 = 5;
    pub const PERSISTENT_SEQUENTIAL_WITH_TTL: i32 = 6;
}

/// The handshake a client sends first. `read_only` is `None` for old clients that omit the
/// byte; the server then omits it from its answer too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub time_out: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    pub read_only: Option<bool>,
}

impl Jute for ConnectRequest {
    fn put<B: BufMut>(&self, out: &mut B) {
        self.protocol_version.put(out);
        self.last_zxid_seen.put(out);
        self.time_out.put(out);
        self.session_id.put(out);
        self.passwd.put(out);
        if let Some(ro) = self.read_only {
            ro.put(out);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ConnectRequest {
            protocol_version: Jute::get(r)?,
            last_zxid_seen: Jute::get(r)?,
            time_out: Jute::get(r)?,
            session_id: Jute::get(r)?,
            passwd: Jute::get(r)?,
            read_only: if r.remaining() == 0 {
                None
            } else {
                Some(Jute::get(r)?)
            },
        })
    }
}

/// The server's answer to the handshake; `read_only` is written only when the client sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub time_out: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    pub read_only: Option<bool>,
}

impl Jute for ConnectResponse {
    fn put<B: BufMut>(&self, out: &mut B) {
        self.protocol_version.put(out);
        self.time_out.put(out);
        self.session_id.put(out);
        self.passwd.put(out);
        if let Some(ro) = self.read_only {
            ro.put(out);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ConnectResponse {
            protocol_version: Jute::get(r)?,
            time_out: Jute::get(r)?,
            session_id: Jute::get(r)?,
            passwd: Jute::get(r)?,
            read_only: if r.remaining() == 0 {
                None
            } else {
                Some(Jute::get(r)?)
            },
        })
    }
}

jute_record! {
    pub struct RequestHeader {
        pub xid: i32,
        pub type_: i32,
    }
}

jute_record! {
    pub struct ReplyHeader {
        pub xid: i32,
        pub zxid: i64,
        pub err: i32,
    }
}

jute_record! {
    pub struct MultiHeader {
        pub type_: i32,
        pub done: bool,
        pub err: i32,
    }
}

jute_record! {
    pub struct AuthPacket {
        pub type_: i32,
        pub scheme: String,
        pub auth: Bytes,
    }
}

jute_record! {
    pub struct WatcherEvent {
        pub type_: i32,
        pub state: i32,
        pub path: String,
    }
}

jute_record! {
    pub struct ErrorResponse {
        pub err: i32,
    }
}

jute_record! {
    pub struct CreateRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub flags: i32,
    }
}

jute_record! {
    pub struct CreateTtlRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub flags: i32,
        pub ttl: i64,
    }
}

jute_record! {
    pub struct CreateResponse {
        pub path: String,
    }
}

jute_record! {
    pub struct Create2Response {
        pub path: String,
        pub stat: Stat,
    }
}

jute_record! {
    pub struct DeleteRequest {
        pub path: String,
        pub version: i32,
    }
}

jute_record! {
    /// The body of exists, getData, getChildren and getChildren2 requests.
    pub struct PathWatchRequest {
        pub path: String,
        pub watch: bool,
    }
}

jute_record! {
    /// The body of getACL, sync, getEphemerals and getAllChildrenNumber requests.
    pub struct PathRequest {
        pub path: String,
    }
}

jute_record! {
    pub struct GetDataResponse {
        pub data: Option<Bytes>,
        pub stat: Stat,
    }
}

jute_record! {
    pub struct SetDataRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub version: i32,
    }
}

jute_record! {
    pub struct GetAclResponse {
        pub acl: Vec<Acl>,
        pub stat: Stat,
    }
}

jute_record! {
    pub struct SetAclRequest {
        pub path: String,
        pub acl: Vec<Acl>,
        pub version: i32,
    }
}

jute_record! {
    pub struct GetChildren2Response {
        pub children: Vec<String>,
        pub stat: Stat,
    }
}

jute_record! {
    /// The body of check requests (`CheckVersionRequest`).
    pub struct CheckVersionRequest {
        pub path: String,
        pub version: i32,
    }
}

jute_record! {
    pub struct ReconfigRequest {
        pub joining_servers: String,
        pub leaving_servers: String,
        pub new_members: String,
        pub cur_config_id: i64,
    }
}

jute_record! {
    /// The body of checkWatches and removeWatches requests.
    pub struct WatchesRequest {
        pub path: String,
        pub type_: i32,
    }
}

jute_record! {
    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}

jute_record! {
    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}

jute_record! {
    pub struct SaslToken {
        pub token: Bytes,
    }
}

jute_record! {
    pub struct AddWatchRequest {
        pub path: String,
        pub mode: i32,
    }
}

/// A decoded client request body, by opcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// create (1), create2 (15) and createContainer (19) share a record; the opcode is kept.
    Create(i32, CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    Exists(PathWatchRequest),
    GetData(PathWatchRequest),
    SetData(SetDataRequest),
    GetAcl(PathRequest),
    SetAcl(SetAclRequest),
    GetChildren(PathWatchRequest),
    GetChildren2(PathWatchRequest),
    Sync(PathRequest),
    Ping,
    Check(CheckVersionRequest),
    Multi(Vec<Request>),
    MultiRead(Vec<Request>),
    Reconfig(ReconfigRequest),
    CheckWatches(WatchesRequest),
    RemoveWatches(WatchesRequest),
    Auth(AuthPacket),
    SetWatches(SetWatches2),
    /// setWatches2 (105): kept apart from 101 only so the opcode round-trips.
    SetWatches2(SetWatches2),
    Sasl(SaslToken),
    GetEphemerals(PathRequest),
    GetAllChildrenNumber(PathRequest),
    AddWatch(AddWatchRequest),
    WhoAmI,
    CloseSession,
}

/// Ops a multi may carry (`MultiOperationRecord`).
const MULTI_WRITE_OPS: [i32; 7] = [
    op::CREATE,
    op::CREATE2,
    op::CREATE_TTL,
    op::CREATE_CONTAINER,
    op::DELETE,
    op::SET_DATA,
    op::CHECK,
];
const MULTI_READ_OPS: [i32; 2] = [op::GET_CHILDREN, op::GET_DATA];

/// The most sub-operations one multi may carry. Each takes at least a 9-byte header, so a
/// 1 MiB frame holds fewer than 120k; the cap keeps a hostile multi cheap to reject.
pub const MULTI_OPS_MAX: usize = 1 << 17;

impl Request {
    /// Decodes the body of a request with opcode `type_`. Unknown opcodes are an error the
    /// caller answers with `Unimplemented`.
    pub fn decode(type_: i32, body: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(body);
        let req = Request::get(type_, &mut r)?;
        // ZooKeeper ignores bytes after the record (old clients pad some requests), so do we.
        Ok(req)
    }

    fn get(type_: i32, r: &mut Reader<'_>) -> Result<Request, DecodeError> {
        Ok(match type_ {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => {
                Request::Create(type_, Jute::get(r)?)
            }
            op::CREATE_TTL => Request::CreateTtl(Jute::get(r)?),
            op::DELETE => Request::Delete(Jute::get(r)?),
            op::EXISTS => Request::Exists(Jute::get(r)?),
            op::GET_DATA => Request::GetData(Jute::get(r)?),
            op::SET_DATA => Request::SetData(Jute::get(r)?),
            op::GET_ACL => Request::GetAcl(Jute::get(r)?),
            op::SET_ACL => Request::SetAcl(Jute::get(r)?),
            op::GET_CHILDREN => Request::GetChildren(Jute::get(r)?),
            op::GET_CHILDREN2 => Request::GetChildren2(Jute::get(r)?),
            op::SYNC => Request::Sync(Jute::get(r)?),
            op::PING => Request::Ping,
            op::CHECK => Request::Check(Jute::get(r)?),
            op::MULTI => Request::Multi(Request::get_multi(r, &MULTI_WRITE_OPS)?),
            op::MULTI_READ => Request::MultiRead(Request::get_multi(r, &MULTI_READ_OPS)?),
            op::RECONFIG => Request::Reconfig(Jute::get(r)?),
            op::CHECK_WATCHES => Request::CheckWatches(Jute::get(r)?),
            op::REMOVE_WATCHES => Request::RemoveWatches(Jute::get(r)?),
            op::AUTH => Request::Auth(Jute::get(r)?),
            op::SET_WATCHES => {
                let w: SetWatches = Jute::get(r)?;
                Request::SetWatches(SetWatches2 {
                    relative_zxid: w.relative_zxid,
                    data_watches: w.data_watches,
                    exist_watches: w.exist_watches,
                    child_watches: w.child_watches,
                    ..SetWatches2::default()
                })
            }
            op::SET_WATCHES2 => Request::SetWatches2(Jute::get(r)?),
            op::SASL => Request::Sasl(Jute::get(r)?),
            op::GET_EPHEMERALS => Request::GetEphemerals(Jute::get(r)?),
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber(Jute::get(r)?),
            op::ADD_WATCH => Request::AddWatch(Jute::get(r)?),
            op::WHO_AM_I => Request::WhoAmI,
            op::CLOSE_SESSION => Request::CloseSession,
            other => return Err(DecodeError::UnknownOpcode(other)),
        })
    }

    fn get_multi(r: &mut Reader<'_>, allowed: &[i32]) -> Result<Vec<Request>, DecodeError> {
        let mut ops = Vec::new();
        loop {
            let h: MultiHeader = Jute::get(r)?;
            if h.done {
                return Ok(ops);
            }
            if !allowed.contains(&h.type_) {
                return Err(DecodeError::BadValue("operation not allowed in this multi"));
            }
            if ops.len() >= MULTI_OPS_MAX {
                return Err(DecodeError::BadValue("too many operations in one multi"));
            }
            ops.push(Request::get(h.type_, r)?);
        }
    }

    /// The opcode this request was decoded from.
    pub fn op_code(&self) -> i32 {
        match self {
            Request::Create(code, _) => *code,
            Request::CreateTtl(_) => op::CREATE_TTL,
            Request::Delete(_) => op::DELETE,
            Request::Exists(_) => op::EXISTS,
            Request::GetData(_) => op::GET_DATA,
            Request::SetData(_) => op::SET_DATA,
            Request::GetAcl(_) => op::GET_ACL,
            Request::SetAcl(_) => op::SET_ACL,
            Request::GetChildren(_) => op::GET_CHILDREN,
            Request::GetChildren2(_) => op::GET_CHILDREN2,
            Request::Sync(_) => op::SYNC,
            Request::Ping => op::PING,
            Request::Check(_) => op::CHECK,
            Request::Multi(_) => op::MULTI,
            Request::MultiRead(_) => op::MULTI_READ,
            Request::Reconfig(_) => op::RECONFIG,
            Request::CheckWatches(_) => op::CHECK_WATCHES,
            Request::RemoveWatches(_) => op::REMOVE_WATCHES,
            Request::Auth(_) => op::AUTH,
            Request::SetWatches(_) => op::SET_WATCHES,
            Request::SetWatches2(_) => op::SET_WATCHES2,
            Request::Sasl(_) => op::SASL,
            Request::GetEphemerals(_) => op::GET_EPHEMERALS,
            Request::GetAllChildrenNumber(_) => op::GET_ALL_CHILDREN_NUMBER,
            Request::AddWatch(_) => op::ADD_WATCH,
            Request::WhoAmI => op::WHO_AM_I,
            Request::CloseSession => op::CLOSE_SESSION,
        }
    }

    /// Encodes the body (the inverse of [`Request::decode`]); used by clients and tests.
    pub fn put<B: BufMut>(&self, out: &mut B) {
        match self {
            Request::Create(_, r) => r.put(out),
            Request::CreateTtl(r) => r.put(out),
            Request::Delete(r) => r.put(out),
            Request::Exists(r)
            | Request::GetData(r)
            | Request::GetChildren(r)
            | Request::GetChildren2(r) => r.put(out),
            Request::SetData(r) => r.put(out),
            Request::GetAcl(r)
            | Request::Sync(r)
            | Request::GetEphemerals(r)
            | Request::GetAllChildrenNumber(r) => r.put(out),
            Request::SetAcl(r) => r.put(out),
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
            Request::Check(r) => r.put(out),
            Request::Multi(ops) | Request::MultiRead(ops) => {
                for sub in ops {
                    MultiHeader {
                        type_: sub.op_code(),
                        done: false,
                        err: -1,
                    }
                    .put(out);
                    sub.put(out);
                }
                MultiHeader {
                    type_: -1,
                    done: true,
                    err: -1,
                }
                .put(out);
            }
            Request::Reconfig(r) => r.put(out),
            Request::CheckWatches(r) | Request::RemoveWatches(r) => r.put(out),
            Request::Auth(r) => r.put(out),
            Request::SetWatches(w) => SetWatches {
                relative_zxid: w.relative_zxid,
                data_watches: w.data_watches.clone(),
                exist_watches: w.exist_watches.clone(),
                child_watches: w.child_watches.clone(),
            }
            .put(out),
            Request::SetWatches2(w) => w.put(out),
            Request::Sasl(r) => r.put(out),
            Request::AddWatch(r) => r.put(out),
        }
    }

    /// True for requests that change the tree and so become transactions.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create(..)
                | Request::CreateTtl(_)
                | Request::Delete(_)
                | Request::SetData(_)
                | Request::SetAcl(_)
                | Request::Check(_)
                | Request::Multi(_)
                | Request::Reconfig(_)
                | Request::CloseSession
        )
    }

    /// The path a request names, for logs and per-path statistics.
    pub fn path(&self) -> Option<&str> {
        Some(match self {
            Request::Create(_, r) => &r.path,
            Request::CreateTtl(r) => &r.path,
            Request::Delete(r) => &r.path,
            Request::Exists(r)
            | Request::GetData(r)
            | Request::GetChildren(r)
            | Request::GetChildren2(r) => &r.path,
            Request::SetData(r) => &r.path,
            Request::GetAcl(r)
            | Request::Sync(r)
            | Request::GetEphemerals(r)
            | Request::GetAllChildrenNumber(r) => &r.path,
            Request::SetAcl(r) => &r.path,
            Request::Check(r) => &r.path,
            Request::CheckWatches(r) | Request::RemoveWatches(r) => &r.path,
            Request::AddWatch(r) => &r.path,
            _ => return None,
        })
    }
}

/// One result inside a multi or multiRead response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiResult {
    Create(String),
    Create2(String, Stat),
    Delete,
    SetData(Stat),
    Check,
    GetData(Option<Bytes>, Stat),
    GetChildren(Vec<String>),
    Error(Code),
}

impl MultiResult {
    fn put<B: BufMut>(&self, out: &mut B) {
        let header = |type_: i32, err: i32| MultiHeader {
            type_,
            done: false,
            err,
        };
        match self {
            MultiResult::Create(path) => {
                header(op::CREATE, 0).put(out);
                path.put(out);
            }
            MultiResult::Create2(path, stat) => {
                header(op::CREATE2, 0).put(out);
                path.put(out);
                stat.put(out);
            }
            MultiResult::Delete => header(op::DELETE, 0).put(out),
            MultiResult::SetData(stat) => {
                header(op::SET_DATA, 0).put(out);
                stat.put(out);
            }
            MultiResult::Check => header(op::CHECK, 0).put(out),
            MultiResult::GetData(data, stat) => {
                header(op::GET_DATA, 0).put(out);
                data.put(out);
                stat.put(out);
            }
            MultiResult::GetChildren(children) => {
                header(op::GET_CHILDREN, 0).put(out);
                children.put(out);
            }
            MultiResult::Error(code) => {
                header(op::ERROR, code.as_i32()).put(out);
                code.as_i32().put(out);
            }
        }
    }
}

/// A decoded response body. Encoded after the [`ReplyHeader`] only when the header's error is
/// OK, except for multis, whose per-op results are always sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Empty,
    Create(String),
    Create2(String, Stat),
    Stat(Stat),
    GetData(Option<Bytes>, Stat),
    GetAcl(Vec<Acl>, Stat),
    Children(Vec<String>),
    Children2(Vec<String>, Stat),
    Sync(String),
    Multi(Vec<MultiResult>),
    /// A SASL token; null when the server has no SASL configured.
    Sasl(Option<Bytes>),
    /// addWatch answers with an `ErrorResponse` of 0.
    AddWatch,
    Paths(Vec<String>),
    Count(i32),
    WhoAmI(Vec<ClientInfo>),
    Event(WatcherEvent),
}

impl Response {
    pub fn put<B: BufMut>(&self, out: &mut B) {
        match self {
            Response::Empty => {}
            Response::Create(path) | Response::Sync(path) => path.put(out),
            Response::Create2(path, stat) => {
                path.put(out);
                stat.put(out);
            }
            Response::Stat(stat) => stat.put(out),
            Response::GetData(data, stat) => {
                data.put(out);
                stat.put(out);
            }
            Response::GetAcl(acl, stat) => {
                acl.put(out);
                stat.put(out);
            }
            Response::Children(c) | Response::Paths(c) => c.put(out),
            Response::Children2(c, stat) => {
                c.put(out);
                stat.put(out);
            }
            Response::Multi(results) => {
                for r in results {
                    r.put(out);
                }
                MultiHeader {
                    type_: -1,
                    done: true,
                    err: -1,
                }
                .put(out);
            }
            Response::Sasl(token) => token.put(out),
            Response::AddWatch => 0i32.put(out),
            Response::Count(n) => n.put(out),
            Response::WhoAmI(infos) => infos.put(out),
            Response::Event(e) => e.put(out),
        }
    }
}

/// Encodes a reply (header + body where the protocol sends one) without the length prefix.
pub fn put_reply<B: BufMut>(out: &mut B, header: &ReplyHeader, body: &Response) {
    header.put(out);
    if header.err == 0 || matches!(body, Response::Multi(_)) {
        body.put(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::{decode_exact, encode_to_vec};

    #[test]
    fn connect_request_with_and_without_read_only() {
        let mut req = ConnectRequest {
            time_out: 30000,
            passwd: Bytes::from(vec![0u8; 16]),
            read_only: Some(false),
            ..ConnectRequest::default()
        };
        let bytes = encode_to_vec(&req);
        assert_eq!(bytes.len(), 45);
        assert_eq!(decode_exact::<ConnectRequest>(&bytes).unwrap(), req);
        req.read_only = None;
        let bytes = encode_to_vec(&req);
        assert_eq!(bytes.len(), 44);
        assert_eq!(decode_exact::<ConnectRequest>(&bytes).unwrap(), req);
    }

    #[test]
    fn multi_round_trips_and_rejects_foreign_ops() {
        let multi = Request::Multi(vec![
            Request::Create(
                op::CREATE,
                CreateRequest {
                    path: "/a".into(),
                    ..Default::default()
                },
            ),
            Request::Check(CheckVersionRequest {
                path: "/a".into(),
                version: 3,
            }),
        ]);
        let mut body = Vec::new();
        multi.put(&mut body);
        assert_eq!(Request::decode(op::MULTI, &body).unwrap(), multi);
        // A getData inside a write multi is refused.
        let bad = Request::Multi(vec![Request::GetData(PathWatchRequest::default())]);
        let mut body = Vec::new();
        bad.put(&mut body);
        assert!(Request::decode(op::MULTI, &body).is_err());
    }

    #[test]
    fn error_replies_carry_no_body_but_multis_do() {
        let header = ReplyHeader {
            xid: 1,
            zxid: 2,
            err: Code::NoNode.as_i32(),
        };
        let mut out = Vec::new();
        put_reply(&mut out, &header, &Response::Stat(Stat::default()));
        assert_eq!(out.len(), 16);
        let mut out = Vec::new();
        put_reply(
            &mut out,
            &header,
            &Response::Multi(vec![MultiResult::Error(Code::NoNode)]),
        );
        assert_eq!(out.len(), 16 + 9 + 4 + 9);
    }

    #[test]
    fn unknown_opcodes_are_reported() {
        assert_eq!(
            Request::decode(55, &[]).unwrap_err(),
            DecodeError::UnknownOpcode(55)
        );
    }
}
