//! Sessions: ZooKeeper's SessionTrackerImpl and ExpiryQueue, pure and tick-driven.
//!
//! Sessions expire in batches: each session sits in the bucket of its deadline rounded up to
//! the next multiple of the tick (`(t / tick + 1) * tick`), and a tick expires whole buckets.
//! Time comes in as wall-clock milliseconds with every call.

use std::collections::{BTreeMap, BTreeSet};

pub type SessionId = i64;

/// ZooKeeper's `superSecret`, mixed into the seed of a session's password.
const SUPER_SECRET: i64 = 0xB341_5C00;

/// The password ZooKeeper gives session `id`: 16 bytes from `java.util.Random(id ^ superSecret)`.
/// Any ZooKeeper server can validate it, so sessions survive moving between servers.
pub fn session_password(id: SessionId) -> [u8; 16] {
    let mut rng = JavaRandom::new(id ^ SUPER_SECRET);
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(4) {
        let mut word = rng.next_i32();
        for byte in chunk {
            *byte = word as u8;
            word >>= 8;
        }
    }
    out
}

/// `java.util.Random`'s 48-bit linear congruential generator, only as far as passwords need.
struct JavaRandom {
    seed: i64,
}

impl JavaRandom {
    const MULTIPLIER: i64 = 0x5_DEEC_E66D;
    const MASK: i64 = (1 << 48) - 1;

    fn new(seed: i64) -> JavaRandom {
        JavaRandom {
            seed: (seed ^ Self::MULTIPLIER) & Self::MASK,
        }
    }

    fn next_i32(&mut self) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> 16) as i32
    }
}

/// The first session id a server hands out: the time in the middle bits, the server id in the
/// top byte (`SessionTrackerImpl.initializeNextSessionId`).
pub fn initial_session_id(server_id: u64, now_ms: i64) -> SessionId {
    let time_bits = ((now_ms << 24) as u64 >> 8) as i64;
    let id = time_bits | ((server_id as i64) << 56);
    // Long.MIN_VALUE marks containers in ephemeralOwner; never hand it out.
    if id == i64::MIN {
        id + 1
    } else {
        id
    }
}

/// One tracked session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub timeout_ms: i32,
    /// Set once a closeSession is on its way: the session refuses new requests.
    pub closing: bool,
    /// The bucket this session expires in.
    expires_at_ms: i64,
}

/// Tracks live sessions and their deadlines.
#[derive(Debug)]
pub struct SessionTracker {
    sessions: BTreeMap<SessionId, Session>,
    buckets: BTreeMap<i64, BTreeSet<SessionId>>,
    tick_ms: i64,
    next_id: SessionId,
}

impl SessionTracker {
    pub fn new(server_id: u64, tick_ms: u64, now_ms: i64) -> SessionTracker {
        assert!(tick_ms > 0, "tickTime must be positive");
        SessionTracker {
            sessions: BTreeMap::new(),
            buckets: BTreeMap::new(),
            tick_ms: tick_ms as i64,
            next_id: initial_session_id(server_id, now_ms),
        }
    }

    /// Allocates the next session id (not yet tracked).
    pub fn allocate_id(&mut self) -> SessionId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        if self.next_id == i64::MIN {
            self.next_id += 1;
        }
        id
    }

    fn round_up(&self, t: i64) -> i64 {
        (t / self.tick_ms + 1) * self.tick_ms
    }

    /// Starts tracking `id` (a createSession being prepared, or one restored from disk).
    pub fn track(&mut self, id: SessionId, timeout_ms: i32, now_ms: i64) {
        if self.sessions.contains_key(&id) {
            return;
        }
        let session = Session {
            id,
            timeout_ms,
            closing: false,
            expires_at_ms: 0,
        };
        self.sessions.insert(id, session);
        self.touch(id, timeout_ms, now_ms);
    }

    /// Pushes the deadline of a live session to `now + timeout`. False if the session is unknown
    /// or closing (the caller then treats it as expired).
    pub fn touch(&mut self, id: SessionId, timeout_ms: i32, now_ms: i64) -> bool {
        let deadline = self.round_up(now_ms + i64::from(timeout_ms));
        let Some(session) = self.sessions.get_mut(&id) else {
            return false;
        };
        if session.closing {
            return false;
        }
        let old = session.expires_at_ms;
        if old == deadline {
            return true;
        }
        session.expires_at_ms = deadline;
        if let Some(bucket) = self.buckets.get_mut(&old) {
            bucket.remove(&id);
            if bucket.is_empty() {
                self.buckets.remove(&old);
            }
        }
        self.buckets.entry(deadline).or_default().insert(id);
        true
    }

    /// Forgets every session (a learner installing the leader's snapshot); ids keep counting.
    pub fn clear(&mut self) {
        self.sessions.clear();
        self.buckets.clear();
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Live and not closing.
    pub fn is_active(&self, id: SessionId) -> bool {
        self.sessions.get(&id).is_some_and(|s| !s.closing)
    }

    pub fn set_closing(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = true;
        }
    }

    pub fn remove(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.remove(&id) {
            if let Some(bucket) = self.buckets.get_mut(&s.expires_at_ms) {
                bucket.remove(&id);
                if bucket.is_empty() {
                    self.buckets.remove(&s.expires_at_ms);
                }
            }
        }
    }

    /// Sessions whose bucket is due at `now_ms`, in id order. They are marked closing and left
    /// tracked until their closeSession transaction is applied.
    pub fn expire(&mut self, now_ms: i64) -> Vec<SessionId> {
        let mut expired = Vec::new();
        while let Some((&deadline, _)) = self.buckets.first_key_value() {
            if deadline > now_ms {
                break;
            }
            let ids = self.buckets.remove(&deadline).unwrap_or_default();
            for id in ids {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.closing = true;
                    expired.push(id);
                }
            }
        }
        expired.sort_unstable();
        expired
    }

    /// When the next bucket falls due, if any session is tracked.
    pub fn next_expiry_ms(&self) -> Option<i64> {
        self.buckets.first_key_value().map(|(&t, _)| t)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_match_java_random() {
        // java.util.Random(42).nextInt() is -1170105035 (a well-known value).
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_i32(), -1170105035);
        assert_eq!(r.next_i32(), 234785527);
        // A password is a pure function of the id, 16 bytes, different per id.
        assert_eq!(session_password(7), session_password(7));
        assert_ne!(session_password(7), session_password(8));
    }

    #[test]
    fn session_ids_carry_the_server_id_and_skip_the_container_marker() {
        let id = initial_session_id(3, 1_700_000_000_000);
        assert_eq!(id >> 56, 3);
        assert_ne!(initial_session_id(0x80, 0), i64::MIN);
    }

    #[test]
    fn sessions_expire_in_rounded_buckets() {
        let mut t = SessionTracker::new(0, 2000, 0);
        t.track(1, 4000, 1000); // 1000 + 4000 = 5000 -> bucket 6000
        assert_eq!(t.next_expiry_ms(), Some(6000));
        assert!(t.expire(5999).is_empty());
        assert!(t.touch(1, 4000, 3000)); // 7000 -> 8000
        assert!(t.expire(6000).is_empty());
        assert_eq!(t.expire(8000), vec![1]);
        assert!(!t.is_active(1));
        assert!(
            !t.touch(1, 4000, 8000),
            "a closing session cannot be revived"
        );
        t.remove(1);
        assert!(t.is_empty());
        assert_eq!(t.next_expiry_ms(), None);
    }
}
