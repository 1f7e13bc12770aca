//! Records of jute module `org.apache.zookeeper.txn`: what the write-ahead log stores and the
//! leader proposes. A transaction is a [`TxnHeader`] plus one body record chosen by the header's
//! type (an opcode); [`TxnBody`] is that choice as a Rust enum.

use super::data::Acl;
use super::proto::op;
use super::{encode_to_vec, jute_record, DecodeError, Jute, Reader};
use bytes::{BufMut, Bytes};

jute_record! {
    pub struct TxnHeader {
        /// The session that issued the transaction.
        pub client_id: i64,
        pub cxid: i32,
        pub zxid: i64,
        /// Wall-clock milliseconds when the leader prepared it: ctime/mtime of what it touches.
        pub time: i64,
        pub type_: i32,
    }
}

jute_record! {
    pub struct TxnDigest {
        pub version: i32,
        pub tree_digest: i64,
    }
}

jute_record! {
    pub struct CreateTxn {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub ephemeral: bool,
        pub parent_cversion: i32,
    }
}

jute_record! {
    pub struct CreateTtlTxn {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub parent_cversion: i32,
        pub ttl: i64,
    }
}

jute_record! {
    pub struct CreateContainerTxn {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub parent_cversion: i32,
    }
}

jute_record! {
    pub struct DeleteTxn {
        pub path: String,
    }
}

jute_record! {
    pub struct SetDataTxn {
        pub path: String,
        pub data: Option<Bytes>,
        pub version: i32,
    }
}

jute_record! {
    pub struct CheckVersionTxn {
        pub path: String,
        pub version: i32,
    }
}

jute_record! {
    pub struct SetAclTxn {
        pub path: String,
        pub acl: Vec<Acl>,
        pub version: i32,
    }
}

jute_record! {
    pub struct CreateSessionTxn {
        pub time_out: i32,
    }
}

jute_record! {
    pub struct CloseSessionTxn {
        pub paths_to_delete: Vec<String>,
    }
}

jute_record! {
    pub struct ErrorTxn {
        pub err: i32,
    }
}

jute_record! {
    /// One sub-transaction of a multi, its body serialized into `data`.
    pub struct Txn {
        pub type_: i32,
        pub data: Bytes,
    }
}

/// The body of a transaction, by header type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnBody {
    /// `create` (1) and `create2` (15) both log a `CreateTxn` under their own type.
    Create(i32, CreateTxn),
    CreateContainer(CreateContainerTxn),
    CreateTtl(CreateTtlTxn),
    Delete(DeleteTxn),
    /// Issued by the container manager; the same record as `Delete`.
    DeleteContainer(DeleteTxn),
    SetData(SetDataTxn),
    SetAcl(SetAclTxn),
    Check(CheckVersionTxn),
    Multi(Vec<TxnBody>),
    CreateSession(CreateSessionTxn),
    /// `None` when the log holds the pre-3.6 empty body.
    CloseSession(Option<CloseSessionTxn>),
    Error(ErrorTxn),
}

impl TxnBody {
    pub fn type_code(&self) -> i32 {
        match self {
            TxnBody::Create(code, _) => *code,
            TxnBody::CreateContainer(_) => op::CREATE_CONTAINER,
            TxnBody::CreateTtl(_) => op::CREATE_TTL,
            TxnBody::Delete(_) => op::DELETE,
            TxnBody::DeleteContainer(_) => op::DELETE_CONTAINER,
            TxnBody::SetData(_) => op::SET_DATA,
            TxnBody::SetAcl(_) => op::SET_ACL,
            TxnBody::Check(_) => op::CHECK,
            TxnBody::Multi(_) => op::MULTI,
            TxnBody::CreateSession(_) => op::CREATE_SESSION,
            TxnBody::CloseSession(_) => op::CLOSE_SESSION,
            TxnBody::Error(_) => op::ERROR,
        }
    }

    /// Writes the body record (not the header).
    pub fn put<B: BufMut>(&self, out: &mut B) {
        match self {
            TxnBody::Create(_, t) => t.put(out),
            TxnBody::CreateContainer(t) => t.put(out),
            TxnBody::CreateTtl(t) => t.put(out),
            TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => t.put(out),
            TxnBody::SetData(t) => t.put(out),
            TxnBody::SetAcl(t) => t.put(out),
            TxnBody::Check(t) => t.put(out),
            TxnBody::Multi(subs) => {
                let txns: Vec<Txn> = subs
                    .iter()
                    .map(|s| {
                        let mut data = Vec::new();
                        s.put(&mut data);
                        Txn {
                            type_: s.type_code(),
                            data: data.into(),
                        }
                    })
                    .collect();
                txns.put(out);
            }
            TxnBody::CreateSession(t) => t.put(out),
            TxnBody::CloseSession(Some(t)) => t.put(out),
            TxnBody::CloseSession(None) => {}
            TxnBody::Error(t) => t.put(out),
        }
    }

    /// Reads the body for header type `type_` from the rest of `r`.
    pub fn get(type_: i32, r: &mut Reader<'_>) -> Result<TxnBody, DecodeError> {
        Ok(match type_ {
            op::CREATE | op::CREATE2 => TxnBody::Create(type_, Jute::get(r)?),
            op::CREATE_CONTAINER => TxnBody::CreateContainer(Jute::get(r)?),
            op::CREATE_TTL => TxnBody::CreateTtl(Jute::get(r)?),
            op::DELETE => TxnBody::Delete(Jute::get(r)?),
            op::DELETE_CONTAINER => TxnBody::DeleteContainer(Jute::get(r)?),
            op::SET_DATA => TxnBody::SetData(Jute::get(r)?),
            op::SET_ACL => TxnBody::SetAcl(Jute::get(r)?),
            op::CHECK => TxnBody::Check(Jute::get(r)?),
            op::MULTI => {
                let txns: Vec<Txn> = Jute::get(r)?;
                // Grows with the subs that decode: a TxnBody is far wider in memory than a
                // `Txn` on the wire, so reserving txns.len() up front would amplify the input.
                let mut subs = Vec::new();
                for t in &txns {
                    if t.type_ == op::MULTI {
                        return Err(DecodeError::BadValue("multi nested in multi"));
                    }
                    let mut sub = Reader::new(&t.data);
                    subs.push(TxnBody::get(t.type_, &mut sub)?);
                    sub.finish()?;
                }
                TxnBody::Multi(subs)
            }
            op::CREATE_SESSION => TxnBody::CreateSession(Jute::get(r)?),
            op::CLOSE_SESSION if r.remaining() == 0 => TxnBody::CloseSession(None),
            op::CLOSE_SESSION => TxnBody::CloseSession(Some(Jute::get(r)?)),
            op::ERROR => TxnBody::Error(Jute::get(r)?),
            other => return Err(DecodeError::UnknownOpcode(other)),
        })
    }
}

/// A whole transaction: what one log record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnEntry {
    pub header: TxnHeader,
    pub body: TxnBody,
    pub digest: Option<TxnDigest>,
}

impl TxnEntry {
    /// Serializes header + body (+ digest), the bytes a log record's checksum covers.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = encode_to_vec(&self.header);
        self.body.put(&mut out);
        if let Some(d) = &self.digest {
            d.put(&mut out);
        }
        out
    }

    /// Parses what [`TxnEntry::to_bytes`] writes; a digest is read when bytes remain for it.
    pub fn from_bytes(bytes: &[u8]) -> Result<TxnEntry, DecodeError> {
        let mut r = Reader::new(bytes);
        let header: TxnHeader = Jute::get(&mut r)?;
        let body = TxnBody::get(header.type_, &mut r)?;
        let digest = if r.remaining() == 0 {
            None
        } else {
            Some(Jute::get(&mut r)?)
        };
        r.finish()?;
        Ok(TxnEntry {
            header,
            body,
            digest,
        })
    }
}

/// Decodes a single body record exactly (used by tests and tools).
pub fn decode_body(type_: i32, bytes: &[u8]) -> Result<TxnBody, DecodeError> {
    let mut r = Reader::new(bytes);
    let body = TxnBody::get(type_, &mut r)?;
    r.finish()?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::decode_exact;

    #[test]
    fn multi_round_trips_through_txn_records() {
        let body = TxnBody::Multi(vec![
            TxnBody::Create(
                op::CREATE,
                CreateTxn {
                    path: "/a".into(),
                    data: Some(Bytes::from_static(b"x")),
                    ..Default::default()
                },
            ),
            TxnBody::Error(ErrorTxn { err: -101 }),
        ]);
        let entry = TxnEntry {
            header: TxnHeader {
                client_id: 7,
                cxid: 1,
                zxid: 2,
                time: 3,
                type_: op::MULTI,
            },
            body,
            digest: Some(TxnDigest {
                version: 2,
                tree_digest: 99,
            }),
        };
        assert_eq!(TxnEntry::from_bytes(&entry.to_bytes()).unwrap(), entry);
        let _ = decode_exact::<TxnHeader>(&encode_to_vec(&entry.header)).unwrap();
    }
}
