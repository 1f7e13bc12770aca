//! Codec properties: round trips, canonical encodings, decoding as a normalization.

use crate::generators::{damage, Any, Arb, Damaged, OpReply};
use quickcheck::{Gen, QuickCheck, TestResult};
use std::fmt::Debug;
use zabd::client::decode_reply;
use zabd::jute::data::{Acl, ClientInfo, Id, Stat, StatPersisted};
use zabd::jute::proto::{
    put_reply, AddWatchRequest, AuthPacket, CheckVersionRequest, ConnectRequest, ConnectResponse,
    Create2Response, CreateRequest, CreateResponse, CreateTtlRequest, DeleteRequest, ErrorResponse,
    GetAclResponse, GetChildren2Response, GetDataResponse, MultiHeader, PathRequest,
    PathWatchRequest, ReconfigRequest, ReplyHeader, Request, RequestHeader, Response, SaslToken,
    SetAclRequest, SetDataRequest, SetWatches, SetWatches2, WatcherEvent, WatchesRequest,
};
use zabd::jute::quorum::{ElectionHello, LearnerInfo, Notification, QuorumPacket};
use zabd::jute::txn::{
    CheckVersionTxn, CloseSessionTxn, CreateContainerTxn, CreateSessionTxn, CreateTtlTxn,
    CreateTxn, DeleteTxn, ErrorTxn, SetAclTxn, SetDataTxn, Txn, TxnDigest, TxnEntry, TxnHeader,
};
use zabd::jute::{decode_exact, encode_to_vec, Jute};

const TESTS: u64 = 300;

fn qc() -> QuickCheck {
    QuickCheck::new().tests(TESTS).rng(Gen::new(40))
}

/// decode(encode(x)) == x, consuming every byte.
fn round_trips<T: Jute + Any + PartialEq + Clone + Debug + 'static>() {
    fn prop<T: Jute + PartialEq + Debug>(x: Arb<T>) -> TestResult {
        let bytes = encode_to_vec(&x.0);
        match decode_exact::<T>(&bytes) {
            Ok(back) if back == x.0 => TestResult::passed(),
            other => TestResult::error(format!("{:?} came back as {other:?}", x.0)),
        }
    }
    qc().quickcheck(prop::<T> as fn(Arb<T>) -> TestResult);
}

/// Whatever decodes re-encodes to bytes that decode to the same value.
fn normalizes<T: Jute + Any + PartialEq + Clone + Debug + 'static>() {
    fn prop<T: Jute + PartialEq + Debug>(d: Damaged<T>) -> TestResult {
        let Ok(value) = decode_exact::<T>(&d.bytes) else {
            return TestResult::discard();
        };
        match decode_exact::<T>(&encode_to_vec(&value)) {
            Ok(again) if again == value => TestResult::passed(),
            other => TestResult::error(format!("{value:?} re-decoded as {other:?}")),
        }
    }
    qc().quickcheck(prop::<T> as fn(Damaged<T>) -> TestResult);
}

/// For records with one encoding (ints, strict booleans, buffers whose null differs from
/// empty): decode-then-encode reproduces any accepted input exactly.
fn canonical<T: Jute + Any + PartialEq + Clone + Debug + 'static>() {
    fn prop<T: Jute + Debug>(d: Damaged<T>) -> TestResult {
        let Ok(value) = decode_exact::<T>(&d.bytes) else {
            return TestResult::discard();
        };
        let again = encode_to_vec(&value);
        if again == d.bytes {
            TestResult::passed()
        } else {
            TestResult::error(format!(
                "{:?} decoded as {value:?}, re-encoded {again:?}",
                d.bytes
            ))
        }
    }
    qc().quickcheck(prop::<T> as fn(Damaged<T>) -> TestResult);
}

macro_rules! all {
    ($check:ident: $($t:ty),* $(,)?) => {{ $($check::<$t>();)* }};
}

#[test]
fn every_data_record_round_trips() {
    all!(round_trips: Id, Acl, Stat, StatPersisted, ClientInfo);
}

#[test]
fn every_proto_record_round_trips() {
    all!(round_trips: ConnectRequest, ConnectResponse, RequestHeader, ReplyHeader, MultiHeader,
        AuthPacket, WatcherEvent, ErrorResponse, CreateRequest, CreateTtlRequest, CreateResponse,
        Create2Response, DeleteRequest, PathWatchRequest, PathRequest, GetDataResponse,
        SetDataRequest, GetAclResponse, SetAclRequest, GetChildren2Response, CheckVersionRequest,
        ReconfigRequest, WatchesRequest, SetWatches, SetWatches2, SaslToken, AddWatchRequest);
}

#[test]
fn every_txn_record_round_trips() {
    all!(round_trips: TxnHeader, TxnDigest, CreateTxn, CreateTtlTxn, CreateContainerTxn,
        DeleteTxn, SetDataTxn, CheckVersionTxn, SetAclTxn, CreateSessionTxn, CloseSessionTxn,
        ErrorTxn, Txn);
}

#[test]
fn every_quorum_record_round_trips() {
    all!(round_trips: QuorumPacket, LearnerInfo);
}

#[test]
fn records_with_one_encoding_are_reproduced_exactly() {
    all!(canonical: Stat, StatPersisted, RequestHeader, ReplyHeader, MultiHeader, ErrorResponse,
        GetDataResponse, TxnHeader, TxnDigest, CreateSessionTxn, ErrorTxn, LearnerInfo);
}

#[test]
fn decoding_any_record_is_a_normalization() {
    all!(normalizes: Id, Acl, ClientInfo, ConnectRequest, ConnectResponse, AuthPacket,
        WatcherEvent, CreateRequest, CreateTtlRequest, CreateResponse, Create2Response,
        DeleteRequest, PathWatchRequest, PathRequest, SetDataRequest, GetAclResponse,
        SetAclRequest, GetChildren2Response, CheckVersionRequest, ReconfigRequest,
        WatchesRequest, SetWatches, SetWatches2, SaslToken, AddWatchRequest, CreateTxn,
        CreateTtlTxn, CreateContainerTxn, DeleteTxn, SetDataTxn, CheckVersionTxn, SetAclTxn,
        CloseSessionTxn, Txn, QuorumPacket);
}

// ---- Request, through the server's decoder ----

#[test]
fn every_request_round_trips_through_request_decode() {
    fn prop(r: Arb<Request>) -> TestResult {
        let mut body = Vec::new();
        r.0.put(&mut body);
        match Request::decode(r.0.op_code(), &body) {
            Ok(back) if back == r.0 => TestResult::passed(),
            other => TestResult::error(format!("{:?} came back as {other:?}", r.0)),
        }
    }
    qc().tests(2000)
        .quickcheck(prop as fn(Arb<Request>) -> TestResult);
}

/// A request body damaged in transit: if it still decodes, the decoded request re-encodes to
/// bytes that decode to the same request.
#[derive(Clone, Debug)]
struct DamagedRequest {
    op: i32,
    body: Vec<u8>,
}

impl quickcheck::Arbitrary for DamagedRequest {
    fn arbitrary(g: &mut Gen) -> Self {
        let r = Request::any(g);
        let mut body = Vec::new();
        r.put(&mut body);
        DamagedRequest {
            op: r.op_code(),
            body: damage(g, body),
        }
    }
}

#[test]
fn decoding_a_request_is_a_normalization() {
    fn prop(d: DamagedRequest) -> TestResult {
        let Ok(req) = Request::decode(d.op, &d.body) else {
            return TestResult::discard();
        };
        let mut body = Vec::new();
        req.put(&mut body);
        match Request::decode(d.op, &body) {
            Ok(back) if back == req => TestResult::passed(),
            other => TestResult::error(format!("{req:?} re-decoded as {other:?}")),
        }
    }
    qc().tests(2000)
        .quickcheck(prop as fn(DamagedRequest) -> TestResult);
}

// ---- Response, through the client's decoder ----

fn wire(header: &ReplyHeader, reply: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    put_reply(&mut out, header, reply);
    out
}

const HEADER_BYTES: usize = 16;

#[test]
fn every_response_round_trips_through_decode_reply() {
    fn prop(r: Arb<OpReply>, xid: i32, zxid: i64) -> TestResult {
        let header = ReplyHeader { xid, zxid, err: 0 };
        let bytes = wire(&header, &r.0.reply);
        let got: ReplyHeader = decode_exact(&bytes[..HEADER_BYTES]).expect("header");
        assert_eq!(got, header);
        match decode_reply(r.0.op, &header, &bytes[HEADER_BYTES..]) {
            Ok(back) if back == r.0.reply => TestResult::passed(),
            other => TestResult::error(format!("{:?} came back as {other:?}", r.0)),
        }
    }
    qc().tests(2000)
        .quickcheck(prop as fn(Arb<OpReply>, i32, i64) -> TestResult);
}

#[test]
fn an_error_reply_carries_no_body_except_a_multi() {
    fn prop(r: Arb<OpReply>, err: i32) -> TestResult {
        if err == 0 {
            return TestResult::discard();
        }
        let header = ReplyHeader {
            xid: 1,
            zxid: 2,
            err,
        };
        let bytes = wire(&header, &r.0.reply);
        let decoded = decode_reply(r.0.op, &header, &bytes[HEADER_BYTES..]);
        let expected = match &r.0.reply {
            Response::Multi(_) => r.0.reply.clone(),
            _ => Response::Empty,
        };
        match decoded {
            Ok(back) if back == expected => TestResult::passed(),
            other => TestResult::error(format!("{:?} with err {err} came back as {other:?}", r.0)),
        }
    }
    qc().quickcheck(prop as fn(Arb<OpReply>, i32) -> TestResult);
}

#[test]
fn watch_events_round_trip() {
    fn prop(e: Arb<WatcherEvent>) -> bool {
        let header = ReplyHeader {
            xid: -1,
            zxid: 5,
            err: 0,
        };
        let bytes = wire(&header, &Response::Event(e.0.clone()));
        decode_exact::<WatcherEvent>(&bytes[HEADER_BYTES..]) == Ok(e.0)
    }
    qc().quickcheck(prop as fn(Arb<WatcherEvent>) -> bool);
}

#[derive(Clone, Debug)]
struct DamagedReply {
    op: i32,
    body: Vec<u8>,
}

impl quickcheck::Arbitrary for DamagedReply {
    fn arbitrary(g: &mut Gen) -> Self {
        let r = OpReply::any(g);
        let header = ReplyHeader {
            xid: 1,
            zxid: 1,
            err: 0,
        };
        let bytes = wire(&header, &r.reply);
        DamagedReply {
            op: r.op,
            body: damage(g, bytes[HEADER_BYTES..].to_vec()),
        }
    }
}

#[test]
fn decoding_a_reply_is_a_normalization() {
    fn prop(d: DamagedReply) -> TestResult {
        let header = ReplyHeader {
            xid: 1,
            zxid: 1,
            err: 0,
        };
        let Ok(reply) = decode_reply(d.op, &header, &d.body) else {
            return TestResult::discard();
        };
        let bytes = wire(&header, &reply);
        match decode_reply(d.op, &header, &bytes[HEADER_BYTES..]) {
            Ok(back) if back == reply => TestResult::passed(),
            other => TestResult::error(format!("{reply:?} re-decoded as {other:?}")),
        }
    }
    qc().tests(2000)
        .quickcheck(prop as fn(DamagedReply) -> TestResult);
}

// ---- transactions ----

#[derive(Clone, Debug)]
struct DamagedEntry(Vec<u8>);

impl quickcheck::Arbitrary for DamagedEntry {
    fn arbitrary(g: &mut Gen) -> Self {
        let valid = TxnEntry::any(g).to_bytes();
        DamagedEntry(damage(g, valid))
    }
}

#[test]
fn every_txn_entry_round_trips() {
    fn prop(e: Arb<TxnEntry>) -> TestResult {
        match TxnEntry::from_bytes(&e.0.to_bytes()) {
            Ok(back) if back == e.0 => TestResult::passed(),
            other => TestResult::error(format!("{:?} came back as {other:?}", e.0)),
        }
    }
    qc().tests(2000)
        .quickcheck(prop as fn(Arb<TxnEntry>) -> TestResult);
}

#[test]
fn decoding_a_txn_entry_is_a_normalization() {
    fn prop(d: DamagedEntry) -> TestResult {
        let Ok(entry) = TxnEntry::from_bytes(&d.0) else {
            return TestResult::discard();
        };
        match TxnEntry::from_bytes(&entry.to_bytes()) {
            Ok(back) if back == entry => TestResult::passed(),
            other => TestResult::error(format!("{entry:?} re-decoded as {other:?}")),
        }
    }
    qc().tests(2000)
        .quickcheck(prop as fn(DamagedEntry) -> TestResult);
}

// ---- election formats ----

#[test]
fn notifications_round_trip() {
    fn prop(n: Arb<Notification>) -> TestResult {
        let mut bytes = Vec::new();
        n.0.put(&mut bytes);
        match Notification::decode(&bytes) {
            Ok(back) if back == n.0 => TestResult::passed(),
            other => TestResult::error(format!("{:?} came back as {other:?}", n.0)),
        }
    }
    qc().quickcheck(prop as fn(Arb<Notification>) -> TestResult);
}

#[test]
fn election_hellos_round_trip() {
    fn prop(h: Arb<ElectionHello>) -> TestResult {
        let mut bytes = Vec::new();
        h.0.put(&mut bytes);
        match ElectionHello::decode(&bytes) {
            Ok(Some((back, used))) if back == h.0 && used == bytes.len() => TestResult::passed(),
            other => TestResult::error(format!("{:?} came back as {other:?}", h.0)),
        }
    }
    qc().quickcheck(prop as fn(Arb<ElectionHello>) -> TestResult);
}
