//! The bodies of the leader-learner packets, built and parsed as ZooKeeper's `Leader`,
//! `Learner` and `LearnerHandler` write them. Pure functions over byte slices: a malformed body
//! is a [`DecodeError`], which closes the link that sent it.

use super::Sid;
use crate::jute::data::Id;
use crate::jute::quorum::{packet, LearnerInfo, QuorumPacket, LEADER_PROTOCOL_VERSION};
use crate::jute::txn::TxnEntry;
use crate::jute::{encode_to_vec, DecodeError, Jute, Reader};
use bytes::Bytes;

/// A packet with no body.
pub fn bare(type_: i32, zxid: i64) -> QuorumPacket {
    QuorumPacket {
        type_,
        zxid,
        data: None,
        authinfo: Vec::new(),
    }
}

fn with_data(type_: i32, zxid: i64, data: Vec<u8>) -> QuorumPacket {
    QuorumPacket {
        type_,
        zxid,
        data: Some(Bytes::from(data)),
        authinfo: Vec::new(),
    }
}

fn data(p: &QuorumPacket) -> &[u8] {
    p.data.as_deref().unwrap_or(&[])
}

/// FOLLOWERINFO / OBSERVERINFO: the learner's accepted epoch (as a zxid) and its id.
pub fn learner_info(observer: bool, me: Sid, accepted_epoch: i64) -> QuorumPacket {
    let info = LearnerInfo {
        serverid: me,
        protocol_version: LEADER_PROTOCOL_VERSION,
        config_version: 0,
    };
    let type_ = if observer {
        packet::OBSERVERINFO
    } else {
        packet::FOLLOWERINFO
    };
    with_data(type_, accepted_epoch << 32, encode_to_vec(&info))
}

pub fn parse_learner_info(p: &QuorumPacket) -> Result<LearnerInfo, DecodeError> {
    let mut r = Reader::new(data(p));
    let info = LearnerInfo::get(&mut r)?;
    r.finish()?;
    Ok(info)
}

/// LEADERINFO: the proposed epoch (as a zxid) and the protocol version.
pub fn leader_info(epoch: i64) -> QuorumPacket {
    with_data(
        packet::LEADERINFO,
        epoch << 32,
        LEADER_PROTOCOL_VERSION.to_be_bytes().to_vec(),
    )
}

/// ACKEPOCH: the learner's last logged zxid and its current epoch, or -1 when it had already
/// accepted the proposed epoch (that answer does not count towards the quorum).
pub fn ack_epoch(last_logged_zxid: i64, current_epoch: Option<i64>) -> QuorumPacket {
    let epoch = current_epoch.map_or(-1, |e| e as i32);
    with_data(
        packet::ACKEPOCH,
        last_logged_zxid,
        epoch.to_be_bytes().to_vec(),
    )
}

/// The current epoch an ACKEPOCH reports (`None` for -1).
pub fn parse_ack_epoch(p: &QuorumPacket) -> Result<Option<i64>, DecodeError> {
    let mut r = Reader::new(data(p));
    let epoch = r.read_i32()?;
    r.finish()?;
    match epoch {
        -1 => Ok(None),
        e if e < 0 => Err(DecodeError::BadValue("negative epoch in ACKEPOCH")),
        e => Ok(Some(i64::from(e))),
    }
}

/// PROPOSAL / INFORM: a transaction as the log stores it (header, body, digest).
pub fn txn_packet(type_: i32, entry: &TxnEntry) -> QuorumPacket {
    with_data(type_, entry.header.zxid, entry.to_bytes())
}

/// The transaction of a PROPOSAL or INFORM, which must carry the packet's zxid.
pub fn parse_txn(p: &QuorumPacket) -> Result<TxnEntry, DecodeError> {
    let entry = TxnEntry::from_bytes(data(p))?;
    if entry.header.zxid != p.zxid {
        return Err(DecodeError::BadValue(
            "proposal zxid differs from its header",
        ));
    }
    Ok(entry)
}

/// A learner's PING answer: the sessions its clients touched, as (id, timeout) pairs.
pub fn ping_reply(zxid: i64, touches: &[(i64, i32)]) -> QuorumPacket {
    let mut body = Vec::with_capacity(touches.len() * 12);
    for (id, timeout_ms) in touches {
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&timeout_ms.to_be_bytes());
    }
    with_data(packet::PING, zxid, body)
}

pub fn parse_ping_touches(p: &QuorumPacket) -> Result<Vec<(i64, i32)>, DecodeError> {
    let body = data(p);
    if body.len() % 12 != 0 {
        return Err(DecodeError::BadValue(
            "PING body is not whole (session, timeout) pairs",
        ));
    }
    let mut r = Reader::new(body);
    let mut out = Vec::with_capacity(body.len() / 12);
    while r.remaining() > 0 {
        out.push((r.read_i64()?, r.read_i32()?));
    }
    Ok(out)
}

/// A forwarded client request (REQUEST): session, cxid, opcode, then the request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub session: i64,
    pub cxid: i32,
    pub type_: i32,
    pub body: Bytes,
    pub auth: Vec<Id>,
}

pub fn request(f: &Forwarded) -> QuorumPacket {
    let mut body = Vec::with_capacity(16 + f.body.len());
    body.extend_from_slice(&f.session.to_be_bytes());
    body.extend_from_slice(&f.cxid.to_be_bytes());
    body.extend_from_slice(&f.type_.to_be_bytes());
    body.extend_from_slice(&f.body);
    QuorumPacket {
        type_: packet::REQUEST,
        zxid: -1,
        data: Some(Bytes::from(body)),
        authinfo: f.auth.clone(),
    }
}

pub fn parse_request(p: &QuorumPacket) -> Result<Forwarded, DecodeError> {
    let all = p.data.clone().unwrap_or_default();
    let mut r = Reader::new(&all);
    let session = r.read_i64()?;
    let cxid = r.read_i32()?;
    let type_ = r.read_i32()?;
    Ok(Forwarded {
        session,
        cxid,
        type_,
        body: all.slice(16..),
        auth: p.authinfo.clone(),
    })
}

/// REVALIDATE from a learner: a session and the timeout its client asks for.
pub fn revalidate(session: i64, timeout_ms: i32) -> QuorumPacket {
    let mut body = Vec::with_capacity(12);
    body.extend_from_slice(&session.to_be_bytes());
    body.extend_from_slice(&timeout_ms.to_be_bytes());
    with_data(packet::REVALIDATE, -1, body)
}

pub fn parse_revalidate(p: &QuorumPacket) -> Result<(i64, i32), DecodeError> {
    let mut r = Reader::new(data(p));
    let v = (r.read_i64()?, r.read_i32()?);
    r.finish()?;
    Ok(v)
}

/// The leader's REVALIDATE answer: the session and whether it is alive.
pub fn revalidate_answer(session: i64, valid: bool) -> QuorumPacket {
    let mut body = session.to_be_bytes().to_vec();
    body.push(u8::from(valid));
    with_data(packet::REVALIDATE, -1, body)
}

pub fn parse_revalidate_answer(p: &QuorumPacket) -> Result<(i64, bool), DecodeError> {
    let mut r = Reader::new(data(p));
    let v = (r.read_i64()?, r.read_bool()?);
    r.finish()?;
    Ok(v)
}

/// The epoch of a 4-byte LEADERINFO body (the protocol version) is in the zxid; the body only
/// has to be well-formed.
pub fn check_leader_info(p: &QuorumPacket) -> Result<i64, DecodeError> {
    let mut r = Reader::new(data(p));
    let _version = r.read_i32()?;
    r.finish()?;
    if p.zxid & 0xffff_ffff != 0 || p.zxid < 0 {
        return Err(DecodeError::BadValue("LEADERINFO zxid is not an epoch"));
    }
    Ok(p.zxid >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::txn::{CreateSessionTxn, TxnBody, TxnHeader};

    #[test]
    fn every_body_round_trips() {
        let p = learner_info(true, 7, 3);
        assert_eq!((p.type_, p.zxid), (packet::OBSERVERINFO, 3 << 32));
        assert_eq!(parse_learner_info(&p).unwrap().serverid, 7);
        assert_eq!(check_leader_info(&leader_info(5)).unwrap(), 5);
        assert_eq!(parse_ack_epoch(&ack_epoch(9, Some(2))).unwrap(), Some(2));
        assert_eq!(parse_ack_epoch(&ack_epoch(9, None)).unwrap(), None);
        let touches = vec![(1, 4000), (-5, 30000)];
        assert_eq!(
            parse_ping_touches(&ping_reply(0, &touches)).unwrap(),
            touches
        );
        let f = Forwarded {
            session: 0x1234,
            cxid: 7,
            type_: 5,
            body: Bytes::from_static(b"abc"),
            auth: vec![Id {
                scheme: "digest".into(),
                id: "u:x".into(),
            }],
        };
        assert_eq!(parse_request(&request(&f)).unwrap(), f);
        assert_eq!(parse_revalidate(&revalidate(3, 9)).unwrap(), (3, 9));
        assert_eq!(
            parse_revalidate_answer(&revalidate_answer(3, true)).unwrap(),
            (3, true)
        );
        let entry = TxnEntry {
            header: TxnHeader {
                client_id: 1,
                cxid: 0,
                zxid: 0x1_0000_0001,
                time: 5,
                type_: crate::jute::proto::op::CREATE_SESSION,
            },
            body: TxnBody::CreateSession(CreateSessionTxn { time_out: 3000 }),
            digest: None,
        };
        let p = txn_packet(packet::PROPOSAL, &entry);
        assert_eq!(parse_txn(&p).unwrap(), entry);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let mut p = ping_reply(0, &[(1, 2)]);
        p.data = Some(Bytes::from_static(&[0; 11]));
        assert!(parse_ping_touches(&p).is_err());
        assert!(parse_request(&bare(packet::REQUEST, 0)).is_err());
        assert!(parse_ack_epoch(&bare(packet::ACKEPOCH, 0)).is_err());
        let mut li = leader_info(1);
        li.zxid += 1;
        assert!(check_leader_info(&li).is_err());
        let entry_packet = QuorumPacket {
            type_: packet::PROPOSAL,
            zxid: 5,
            data: Some(Bytes::from_static(&[1, 2, 3])),
            authinfo: vec![],
        };
        assert!(parse_txn(&entry_packet).is_err());
    }
}
