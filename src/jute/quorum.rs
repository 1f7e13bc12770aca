//! Server-to-server wire formats, as Apache ZooKeeper writes them, so that a zabd server can
//! one day sit in a mixed ensemble: jute module `org.apache.zookeeper.server.quorum`
//! ([`QuorumPacket`], [`LearnerInfo`]) on the leader-learner port, and the hand-packed
//! FastLeaderElection [`Notification`] and connection [`ElectionHello`] on the election port.

use super::data::Id;
use super::{jute_record, DecodeError, Reader};
use bytes::{BufMut, Bytes};

/// `Leader.java` packet types.
pub mod packet {
    pub const REQUEST: i32 = 1;
    pub const PROPOSAL: i32 = 2;
    pub const ACK: i32 = 3;
    pub const COMMIT: i32 = 4;
    pub const PING: i32 = 5;
    pub const REVALIDATE: i32 = 6;
    pub const SYNC: i32 = 7;
    pub const INFORM: i32 = 8;
    pub const COMMITANDACTIVATE: i32 = 9;
    pub const NEWLEADER: i32 = 10;
    pub const FOLLOWERINFO: i32 = 11;
    pub const UPTODATE: i32 = 12;
    pub const DIFF: i32 = 13;
    pub const TRUNC: i32 = 14;
    pub const SNAP: i32 = 15;
    pub const OBSERVERINFO: i32 = 16;
    pub const LEADERINFO: i32 = 17;
    pub const ACKEPOCH: i32 = 18;
    pub const INFORMANDACTIVATE: i32 = 19;
}

/// The protocol version learners and leaders exchange in LearnerInfo and LEADERINFO.
pub const LEADER_PROTOCOL_VERSION: i32 = 0x10000;

jute_record! {
    /// Every message between leader and learners.
    pub struct QuorumPacket {
        pub type_: i32,
        pub zxid: i64,
        pub data: Option<Bytes>,
        pub authinfo: Vec<Id>,
    }
}

jute_record! {
    /// The body of FOLLOWERINFO and OBSERVERINFO.
    pub struct LearnerInfo {
        pub serverid: i64,
        pub protocol_version: i32,
        pub config_version: i64,
    }
}

/// `QuorumPeer.ServerState` ordinals, as notifications carry them.
pub mod server_state {
    pub const LOOKING: i32 = 0;
    pub const FOLLOWING: i32 = 1;
    pub const LEADING: i32 = 2;
    pub const OBSERVING: i32 = 3;
}

/// The notification version that carries the dynamic configuration.
pub const NOTIFICATION_VERSION: i32 = 2;

/// A FastLeaderElection vote, as sent on the election port (`FastLeaderElection.buildMsg`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notification {
    pub state: i32,
    /// The proposed leader's server id.
    pub leader: i64,
    pub zxid: i64,
    /// The sender's logical clock (election round).
    pub election_epoch: i64,
    pub peer_epoch: i64,
    pub version: i32,
    /// The dynamic configuration text (version >= 2).
    pub config: Bytes,
}

impl Notification {
    /// Encodes the current (44 bytes + config) format.
    pub fn put<B: BufMut>(&self, out: &mut B) {
        out.put_i32(self.state);
        out.put_i64(self.leader);
        out.put_i64(self.zxid);
        out.put_i64(self.election_epoch);
        out.put_i64(self.peer_epoch);
        out.put_i32(self.version);
        super::put_bytes(out, &self.config);
    }

    /// Decodes every format ZooKeeper accepts: 28 bytes (no peer epoch: it is the zxid's
    /// epoch), 40 bytes (no version), and the versioned form, whose config is read only from
    /// version 2 on. The config length is bounded by the message, never trusted.
    pub fn decode(msg: &[u8]) -> Result<Notification, DecodeError> {
        let mut r = Reader::new(msg);
        let state = r.read_i32()?;
        let leader = r.read_i64()?;
        let zxid = r.read_i64()?;
        let election_epoch = r.read_i64()?;
        let mut n = Notification {
            state,
            leader,
            zxid,
            election_epoch,
            ..Notification::default()
        };
        if msg.len() == 28 {
            n.peer_epoch = zxid >> 32;
            return Ok(n);
        }
        n.peer_epoch = r.read_i64()?;
        if msg.len() == 40 {
            return Ok(n);
        }
        n.version = r.read_i32()?;
        if n.version > 1 {
            n.config = r
                .read_buffer()?
                .map(Bytes::copy_from_slice)
                .unwrap_or_default();
        }
        Ok(n)
    }
}

/// The largest election message ZooKeeper accepts (`QuorumCnxManager.PACKETMAXSIZE`).
pub const ELECTION_MESSAGE_MAX_BYTES: usize = 512 * 1024;

/// `QuorumCnxManager.PROTOCOL_VERSION_V1` and `_V2` (V2 lists several addresses).
pub const ELECTION_PROTOCOL_V1: i64 = -65536;
pub const ELECTION_PROTOCOL_V2: i64 = -65535;
/// The longest address list a connection may announce (`QuorumCnxManager.maxBuffer`).
pub const ELECTION_HELLO_ADDRESS_MAX_BYTES: usize = 2048;

/// What a server sends first on a new election connection: who it is and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionHello {
    pub protocol_version: i64,
    pub sid: i64,
    /// `host:port`, or `h1:p1|h2:p2` with V2.
    pub addresses: String,
}

impl ElectionHello {
    pub fn put<B: BufMut>(&self, out: &mut B) {
        out.put_i64(self.protocol_version);
        out.put_i64(self.sid);
        super::put_bytes(out, self.addresses.as_bytes());
    }

    /// Parses a hello from the start of `buf`; `Ok(None)` while incomplete. Returns the hello
    /// and the bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(ElectionHello, usize)>, DecodeError> {
        if buf.len() < 20 {
            return Ok(None);
        }
        let mut r = Reader::new(buf);
        let protocol_version = r.read_i64()?;
        if protocol_version != ELECTION_PROTOCOL_V1 && protocol_version != ELECTION_PROTOCOL_V2 {
            return Err(DecodeError::BadValue("unknown election protocol version"));
        }
        let sid = r.read_i64()?;
        let len = r.read_i32()?;
        if len <= 0 || len as usize > ELECTION_HELLO_ADDRESS_MAX_BYTES {
            return Err(DecodeError::BadValue(
                "election hello address length out of range",
            ));
        }
        let Ok(address) = r.take(len as usize) else {
            return Ok(None);
        };
        let addresses = String::from_utf8_lossy(address).into_owned();
        Ok(Some((
            ElectionHello {
                protocol_version,
                sid,
                addresses,
            },
            r.position(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::{decode_exact, encode_to_vec};

    #[test]
    fn quorum_packets_round_trip() {
        let p = QuorumPacket {
            type_: packet::PROPOSAL,
            zxid: 0x1_0000_0005,
            data: Some(Bytes::from_static(b"txn")),
            authinfo: vec![Id::new("digest", "u:h")],
        };
        assert_eq!(decode_exact::<QuorumPacket>(&encode_to_vec(&p)).unwrap(), p);
        let ack = QuorumPacket {
            type_: packet::ACK,
            zxid: 7,
            data: None,
            authinfo: vec![],
        };
        // type, zxid, null buffer, empty vector.
        assert_eq!(encode_to_vec(&ack).len(), 4 + 8 + 4 + 4);
    }

    #[test]
    fn notifications_in_every_format() {
        let n = Notification {
            state: server_state::LOOKING,
            leader: 3,
            zxid: 0x2_0000_0009,
            election_epoch: 4,
            peer_epoch: 2,
            version: NOTIFICATION_VERSION,
            config: Bytes::from_static(b"server.1=a:1:2\nversion=0"),
        };
        let mut bytes = Vec::new();
        n.put(&mut bytes);
        assert_eq!(bytes.len(), 44 + n.config.len());
        assert_eq!(Notification::decode(&bytes).unwrap(), n);
        // The 40-byte form has no version; the 28-byte one takes the epoch from the zxid.
        let old = Notification::decode(&bytes[..40]).unwrap();
        assert_eq!((old.peer_epoch, old.version), (2, 0));
        let older = Notification::decode(&bytes[..28]).unwrap();
        assert_eq!(older.peer_epoch, 2);
        // A config length beyond the message is an error, not an allocation.
        let mut lying = bytes[..44].to_vec();
        lying[40..44].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(Notification::decode(&lying).is_err());
        assert!(Notification::decode(&bytes[..20]).is_err());
    }

    #[test]
    fn election_hello_is_bounded() {
        let hello = ElectionHello {
            protocol_version: ELECTION_PROTOCOL_V1,
            sid: 2,
            addresses: "127.0.0.1:3888".into(),
        };
        let mut bytes = Vec::new();
        hello.put(&mut bytes);
        assert_eq!(
            ElectionHello::decode(&bytes).unwrap(),
            Some((hello, bytes.len()))
        );
        assert_eq!(
            ElectionHello::decode(&bytes[..bytes.len() - 1]).unwrap(),
            None
        );
        let mut huge = bytes.clone();
        huge[16..20].copy_from_slice(&(1i32 << 20).to_be_bytes());
        assert!(ElectionHello::decode(&huge).is_err());
        let mut wrong = bytes;
        wrong[..8].copy_from_slice(&7i64.to_be_bytes());
        assert!(ElectionHello::decode(&wrong).is_err());
    }
}
