//! ACLs: the two built-in authentication providers (digest, ip), the permission check
//! (`ZooKeeperServer.checkACL`), ACL fix-up at create/setACL time
//! (`PrepRequestProcessor.fixupACL`), and the reference-counted ACL cache that lets every
//! znode store one `i64` instead of its ACL list (`ReferenceCountedACLCache`).
//!
//! Schemes other than world, digest, ip, auth and super have no provider here (ZooKeeper loads
//! sasl and x509 only when configured), so ACLs naming them are invalid.

use crate::jute::data::{Acl, Id};
use crate::jute::proto::Code;
use crate::jute::Jute;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// The ACL reference of `OPEN_ACL_UNSAFE` that ZooKeeper's own nodes carry without an entry in
/// the cache.
pub const OPEN_UNSAFE_REF: i64 = -1;

/// `ZooKeeperServer.checkACL` (without `skipACL`, which the caller applies): may a session
/// holding `ids` do `perm` on a node whose ACL is `acl`?
pub fn check(acl: &[Acl], perm: i32, ids: &[Id]) -> bool {
    if acl.is_empty() {
        return true;
    }
    if ids.iter().any(|id| id.scheme == "super") {
        return true;
    }
    acl.iter()
        .filter(|a| a.perms & perm != 0)
        .any(|a| grants(&a.id, ids))
}

/// Does the ACL entry `entry` name one of `ids`?
fn grants(entry: &Id, ids: &[Id]) -> bool {
    match entry.scheme.as_str() {
        "world" => entry.id == "anyone",
        "digest" => ids
            .iter()
            .any(|id| id.scheme == "digest" && id.id == entry.id),
        "ip" => ids
            .iter()
            .any(|id| id.scheme == "ip" && ip_matches(&id.id, &entry.id)),
        // No provider for the scheme: ZooKeeper skips the entry.
        _ => false,
    }
}

/// `DigestAuthenticationProvider.generateDigest`: "user:password" becomes
/// "user:base64(sha1(user:password))". The user is everything before the first ':'; without
/// one, the whole string is both the user and what is hashed.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// An AuthPacket (`addauth scheme auth`): the ids it adds to the connection.
///
/// - "digest" always succeeds, even without a ':' (ZooKeeper hashes whatever it is given):
///   `digest:<digest(auth)>`, preceded by `super:` when that digest equals the super digest.
/// - "ip" succeeds and adds nothing new: ZooKeeper re-adds the connection's own address, which
///   the connection already holds from its handshake.
/// - Any other scheme has no provider: `AuthFailed` (the caller then closes the connection).
pub fn authenticate(
    scheme: &str,
    auth: &[u8],
    super_digest: Option<&str>,
) -> Result<Vec<Id>, Code> {
    match scheme {
        "digest" => {
            let generated = digest(&String::from_utf8_lossy(auth));
            let mut ids = Vec::with_capacity(2);
            if super_digest == Some(generated.as_str()) {
                ids.push(Id::new("super", ""));
            }
            ids.push(Id {
                scheme: "digest".to_owned(),
                id: generated,
            });
            Ok(ids)
        }
        "ip" => Ok(Vec::new()),
        _ => Err(Code::AuthFailed),
    }
}

/// The id a connection from `addr` holds automatically (`ip:<addr>`), in Java's
/// `InetAddress.getHostAddress` form: dotted IPv4 (IPv4-mapped IPv6 included, as Java turns
/// those into `Inet4Address`), IPv6 as eight lowercase hex groups without `::` compression.
pub fn ip_id(addr: IpAddr) -> Id {
    let text = match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let groups: Vec<String> = v6.segments().iter().map(|s| format!("{s:x}")).collect();
                groups.join(":")
            }
        },
    };
    Id {
        scheme: "ip".to_owned(),
        id: text,
    }
}

/// `PrepRequestProcessor.fixupACL`: removes duplicates (keeping the first), refuses an empty
/// list, expands `auth` into the session's authenticated ids (digest ones: ip ids are not
/// "authenticated" and super has no provider), and refuses ids no provider accepts. Every
/// failure is `InvalidAcl`.
pub fn fixup(acl: &[Acl], auth_ids: &[Id]) -> Result<Vec<Acl>, Code> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(Code::InvalidAcl);
    }
    let mut fixed = Vec::with_capacity(unique.len());
    for a in unique {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => fixed.push(a.clone()),
            "auth" => {
                let before = fixed.len();
                for id in auth_ids.iter().filter(|id| id.scheme == "digest") {
                    fixed.push(Acl {
                        perms: a.perms,
                        id: id.clone(),
                    });
                }
                if fixed.len() == before {
                    return Err(Code::InvalidAcl);
                }
            }
            "digest" if digest_id_valid(&a.id.id) => fixed.push(a.clone()),
            "ip" if ip_id_valid(&a.id.id) => fixed.push(a.clone()),
            _ => return Err(Code::InvalidAcl),
        }
    }
    Ok(fixed)
}

/// CVE-2019-0201: a getACL caller without ADMIN sees digest ids with the hash replaced, as
/// `id.replaceAll(":.*", ":x")` does ('.' stops at Java line terminators).
pub fn mask_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                Acl {
                    perms: a.perms,
                    id: Id {
                        scheme: a.id.scheme.clone(),
                        id: mask_after_colons(&a.id.id),
                    },
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

fn mask_after_colons(id: &str) -> String {
    let is_line_end = |c: char| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let mut out = String::with_capacity(id.len());
    let mut rest = id;
    while let Some(colon) = rest.find(':') {
        out.push_str(&rest[..colon]);
        out.push_str(":x");
        let after = &rest[colon + 1..];
        let end = after.find(is_line_end).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `DigestAuthenticationProvider.isValid`: Java's `id.split(":")` (trailing empty pieces
/// dropped) has exactly two pieces.
fn digest_id_valid(id: &str) -> bool {
    let mut pieces: Vec<&str> = id.split(':').collect();
    while pieces.last() == Some(&"") {
        pieces.pop();
    }
    pieces.len() == 2
}

/// `IPAuthenticationProvider.isValid`: an address, optionally "/bits" within its width.
fn ip_id_valid(id: &str) -> bool {
    parse_cidr(id).is_some()
}

/// `IPAuthenticationProvider.matches`: the session's address `id` against `addr[/bits]`.
pub fn ip_matches(id: &str, acl_expr: &str) -> bool {
    let Some((mut acl_addr, bits)) = parse_cidr(acl_expr) else {
        return false;
    };
    let Some(mut remote) = addr_bytes(id) else {
        return false;
    };
    if remote.len() != acl_addr.len() {
        return false;
    }
    mask(&mut acl_addr, bits);
    mask(&mut remote, bits);
    acl_addr == remote
}

/// "addr[/bits]" as (address bytes, prefix bits); `None` where ZooKeeper rejects it.
fn parse_cidr(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr_text, bits_text) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let addr = addr_bytes(addr_text)?;
    let width = addr.len() * 8;
    let bits = match bits_text {
        None => width,
        Some(text) => {
            let bits = java_parse_int(text, 10)?;
            usize::try_from(bits).ok().filter(|b| *b <= width)?
        }
    };
    Some((addr, bits))
}

/// `addr2Bytes`: anything with a ':' is IPv6, else anything with a '.' is IPv4.
fn addr_bytes(addr: &str) -> Option<Vec<u8>> {
    if addr.contains(':') {
        v6_bytes(addr)
    } else if addr.contains('.') {
        v4_bytes(addr)
    } else {
        None
    }
}

fn v4_bytes(addr: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts
        .iter()
        .map(|p| java_parse_int(p, 10).and_then(|v| u8::try_from(v).ok()))
        .collect()
}

/// `IPAuthenticationProvider.parseV6addr`: eight groups, or fewer around one "::".
fn v6_bytes(addr: &str) -> Option<Vec<u8>> {
    let halves: Vec<&str> = addr.split("::").collect();
    let (head, tail): (Vec<&str>, Vec<&str>) = match halves.as_slice() {
        [all] => {
            let groups: Vec<&str> = all.split(':').collect();
            if groups.len() != 8 {
                return None;
            }
            (groups, Vec::new())
        }
        [a, b] => {
            let head = if a.is_empty() {
                Vec::new()
            } else {
                a.split(':').collect()
            };
            let tail = if b.is_empty() {
                Vec::new()
            } else {
                b.split(':').collect::<Vec<_>>()
            };
            if head.len() + tail.len() >= 8 {
                return None;
            }
            (head, tail)
        }
        _ => return None,
    };
    let mut out = vec![0u8; 16];
    put_v6_groups(&mut out[..head.len() * 2], &head)?;
    let start = 16 - tail.len() * 2;
    put_v6_groups(&mut out[start..], &tail)?;
    Some(out)
}

fn put_v6_groups(out: &mut [u8], groups: &[&str]) -> Option<()> {
    for (slot, group) in out.chunks_exact_mut(2).zip(groups) {
        if group.is_empty() || group.len() > 4 {
            return None;
        }
        let value = java_parse_int(group, 16)?;
        slot[0] = ((value >> 8) & 0xff) as u8;
        slot[1] = (value & 0xff) as u8;
    }
    Some(())
}

/// `Integer.parseInt` for ASCII digits: an optional sign, then at least one digit.
fn java_parse_int(text: &str, radix: u32) -> Option<i32> {
    i32::from_str_radix(text, radix).ok()
}

/// `IPAuthenticationProvider.mask`: keeps the first `bits` bits.
fn mask(bytes: &mut [u8], bits: usize) {
    for (i, b) in bytes.iter_mut().enumerate() {
        let kept = bits.saturating_sub(i * 8).min(8);
        *b &= !(0xffu8.checked_shr(kept as u32).unwrap_or(0));
    }
}

/// A list's identity in the cache: its records' jute encodings back to back, which are
/// self-delimiting, so two lists have the same key exactly when they are equal.
fn list_key(acl: &[Acl]) -> Vec<u8> {
    let mut key = Vec::new();
    for a in acl {
        a.put(&mut key);
    }
    key
}

struct CacheEntry {
    acl: Vec<Acl>,
    refs: i64,
}

/// `ReferenceCountedACLCache`: every distinct ACL list (order matters) gets an id from a
/// counter; nodes hold the id; the entry goes away when its last node does. Id -1 is
/// `OPEN_ACL_UNSAFE` and is never counted (only ZooKeeper's own nodes carry it).
pub struct AclCache {
    by_ref: BTreeMap<i64, CacheEntry>,
    /// The jute encoding of each list, which is equal exactly when the lists are.
    by_list: HashMap<Vec<u8>, i64>,
    last_ref: i64,
    open: Vec<Acl>,
    /// Returned for a reference the cache does not hold (a bug or a corrupt snapshot): grants
    /// nothing, where an empty list would grant everything.
    deny: Vec<Acl>,
}

impl Default for AclCache {
    fn default() -> AclCache {
        AclCache::new()
    }
}

impl AclCache {
    pub fn new() -> AclCache {
        AclCache {
            by_ref: BTreeMap::new(),
            by_list: HashMap::new(),
            last_ref: 0,
            open: Acl::open_unsafe(),
            deny: vec![Acl::new(0, "world", "anyone")],
        }
    }

    /// `convertAcls`: the reference of `acl`, created if new, with one more use counted.
    pub fn intern(&mut self, acl: &[Acl]) -> i64 {
        let key = list_key(acl);
        let r = match self.by_list.get(&key) {
            Some(r) => *r,
            None => {
                self.last_ref += 1;
                let r = self.last_ref;
                self.by_ref.insert(
                    r,
                    CacheEntry {
                        acl: acl.to_vec(),
                        refs: 0,
                    },
                );
                self.by_list.insert(key, r);
                r
            }
        };
        self.add_usage(r);
        r
    }

    /// `convertLong`: the list behind a reference.
    pub fn get(&self, r: i64) -> &[Acl] {
        if r == OPEN_UNSAFE_REF {
            return &self.open;
        }
        match self.by_ref.get(&r) {
            Some(entry) => &entry.acl,
            None => {
                log::error!("ACL not available for reference {r}");
                &self.deny
            }
        }
    }

    /// `removeUsage`: one use fewer; the entry goes when none remain.
    pub fn release(&mut self, r: i64) {
        if r == OPEN_UNSAFE_REF {
            return;
        }
        let Some(entry) = self.by_ref.get_mut(&r) else {
            log::info!("Ignoring acl {r} as it does not exist in the cache");
            return;
        };
        entry.refs -= 1;
        if entry.refs <= 0 {
            self.remove(r);
        }
    }

    /// `addUsage`: one more use of an existing entry (snapshot loading counts uses this way).
    pub fn add_usage(&mut self, r: i64) {
        if r == OPEN_UNSAFE_REF {
            return;
        }
        match self.by_ref.get_mut(&r) {
            Some(entry) => entry.refs += 1,
            None => log::info!("Ignoring acl {r} as it does not exist in the cache"),
        }
    }

    /// Every entry in reference order, as a snapshot lists them.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &[Acl])> {
        self.by_ref.iter().map(|(r, e)| (*r, e.acl.as_slice()))
    }

    /// Entries held (`ReferenceCountedACLCache.size`).
    pub fn len(&self) -> usize {
        self.by_ref.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ref.is_empty()
    }

    /// The uses counted for a reference (0 when absent).
    pub fn refs(&self, r: i64) -> i64 {
        self.by_ref.get(&r).map_or(0, |e| e.refs)
    }

    /// Snapshot loading: an entry read from the snapshot, with no uses yet. The counter moves
    /// past it so new lists never reuse its reference.
    pub fn insert_loaded(&mut self, r: i64, acl: Vec<Acl>) {
        if r == OPEN_UNSAFE_REF {
            return;
        }
        if let Some(old) = self.by_ref.remove(&r) {
            self.by_list.remove(&list_key(&old.acl));
        }
        self.last_ref = self.last_ref.max(r);
        self.by_list.insert(list_key(&acl), r);
        self.by_ref.insert(r, CacheEntry { acl, refs: 0 });
    }

    /// `purgeUnused`: drops the entries no node uses (after a snapshot load).
    pub fn purge_unused(&mut self) {
        let unused: Vec<i64> = self
            .by_ref
            .iter()
            .filter(|(_, e)| e.refs <= 0)
            .map(|(r, _)| *r)
            .collect();
        for r in unused {
            self.remove(r);
        }
    }

    fn remove(&mut self, r: i64) {
        if let Some(entry) = self.by_ref.remove(&r) {
            let key = list_key(&entry.acl);
            // Only forget the list's mapping if it still points here (a snapshot may have
            // listed the same list twice).
            if self.by_list.get(&key) == Some(&r) {
                self.by_list.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::data::perms;

    fn ids(list: &[(&str, &str)]) -> Vec<Id> {
        list.iter().map(|(s, i)| Id::new(s, i)).collect()
    }

    #[test]
    fn digest_matches_zookeeper() {
        // echo -n super:test | openssl sha1 -binary | base64
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
        // No colon: the whole string is the user and is hashed as is (sha1("bob")).
        assert_eq!(digest("bob"), "bob:SBgazSKz7a68ikR4aKfffOYpkgo=");
        // Only the first colon splits.
        assert!(digest("a:b:c").starts_with("a:"));
    }

    #[test]
    fn authenticate_digest_and_super() {
        let ids = authenticate(
            "digest",
            b"super:test",
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="),
        )
        .unwrap();
        assert_eq!(
            ids,
            vec![
                Id::new("super", ""),
                Id::new("digest", "super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
            ]
        );
        let ids = authenticate(
            "digest",
            b"super:wrong",
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="),
        )
        .unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].scheme, "digest");
        // Malformed (no colon) still authenticates, as in ZooKeeper.
        assert_eq!(
            authenticate("digest", b"bob", None).unwrap(),
            vec![Id::new("digest", "bob:SBgazSKz7a68ikR4aKfffOYpkgo=")]
        );
        assert_eq!(authenticate("ip", b"whatever", None), Ok(vec![]));
        assert_eq!(authenticate("sasl", b"x", None), Err(Code::AuthFailed));
        assert_eq!(authenticate("super", b"x", None), Err(Code::AuthFailed));
    }

    #[test]
    fn check_semantics() {
        let digest_acl = vec![Acl::new(perms::READ, "digest", "u:h")];
        assert!(check(&[], perms::ALL, &[]));
        assert!(!check(&digest_acl, perms::READ, &[]));
        assert!(check(&digest_acl, perms::READ, &ids(&[("digest", "u:h")])));
        assert!(!check(
            &digest_acl,
            perms::WRITE,
            &ids(&[("digest", "u:h")])
        ));
        assert!(!check(&digest_acl, perms::READ, &ids(&[("digest", "u:x")])));
        assert!(check(&digest_acl, perms::WRITE, &ids(&[("super", "")])));
        assert!(check(&Acl::open_unsafe(), perms::ADMIN, &[]));
        assert!(!check(
            &[Acl::new(perms::ALL, "world", "someone")],
            perms::READ,
            &[]
        ));
        let ip_acl = vec![Acl::new(perms::READ, "ip", "10.0.0.0/8")];
        assert!(check(&ip_acl, perms::READ, &ids(&[("ip", "10.1.2.3")])));
        assert!(!check(&ip_acl, perms::READ, &ids(&[("ip", "11.1.2.3")])));
        // READ on one entry does not grant WRITE from another that lacks it.
        let mixed = vec![
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::WRITE, "digest", "u:h"),
        ];
        assert!(!check(&mixed, perms::WRITE, &[]));
        assert!(check(&mixed, perms::WRITE | perms::READ, &[]));
    }

    #[test]
    fn cidr_matching() {
        assert!(ip_matches("192.168.1.7", "192.168.1.7"));
        assert!(!ip_matches("192.168.1.8", "192.168.1.7"));
        assert!(ip_matches("192.168.1.8", "192.168.1.0/24"));
        assert!(ip_matches("192.168.1.8", "192.168.0.0/16"));
        assert!(!ip_matches("192.169.1.8", "192.168.0.0/16"));
        assert!(ip_matches("192.168.1.8", "192.168.1.9/31"));
        assert!(!ip_matches("192.168.1.8", "192.168.1.10/31"));
        assert!(ip_matches("192.168.1.8", "192.168.1.11/30"));
        assert!(ip_matches("1.2.3.4", "0.0.0.0/0"));
        assert!(ip_matches("10.255.0.1", "10.200.0.0/9"));
        assert!(!ip_matches("10.1.0.1", "10.200.0.0/9"));
        assert!(!ip_matches("1.2.3.4", "1.2.3.4/33"));
        assert!(!ip_matches("1.2.3.4", "1.2.3.4/-1"));
        assert!(!ip_matches("1.2.3.4", "1.2.3.4/x"));
        assert!(!ip_matches("1.2.3.4", "1.2.3"));
        assert!(!ip_matches("1.2.3.4", "1.2.3.4."));
        assert!(!ip_matches("1.2.3.4", "1.2.3.256"));
        assert!(!ip_matches("1.2.3.4", "host"));
        // Java's parseInt takes a sign.
        assert!(ip_matches("1.2.3.4", "+1.2.3.4"));
        // IPv6, compressed and full forms, and prefixes.
        assert!(ip_matches("0:0:0:0:0:0:0:1", "::1"));
        assert!(ip_matches("::1", "0:0:0:0:0:0:0:1/128"));
        assert!(ip_matches("2001:db8:0:0:0:0:0:5", "2001:db8::/32"));
        assert!(!ip_matches("2001:db9:0:0:0:0:0:5", "2001:db8::/32"));
        assert!(ip_matches("fe80:0:0:0:0:0:0:1", "fe80::/10"));
        assert!(!ip_matches("::1", "::1/129"));
        assert!(!ip_matches("::1", "1::2::3"));
        assert!(!ip_matches("::1", "1:2:3:4:5:6:7:8:9"));
        assert!(!ip_matches("::1", "1:2:3:4::5:6:7:8"));
        assert!(!ip_matches("::1", "12345::"));
        // Families never match each other.
        assert!(!ip_matches("::1", "0.0.0.0/0"));
        assert!(!ip_matches("1.2.3.4", "::/0"));
        // A scoped address (Java appends %scope) does not parse.
        assert!(!ip_matches("fe80:0:0:0:0:0:0:1%eth0", "fe80::/10"));
    }

    #[test]
    fn ip_ids_use_java_text() {
        assert_eq!(ip_id("10.0.0.1".parse().unwrap()).id, "10.0.0.1");
        assert_eq!(ip_id("::1".parse().unwrap()).id, "0:0:0:0:0:0:0:1");
        assert_eq!(
            ip_id("2001:db8::ab".parse().unwrap()).id,
            "2001:db8:0:0:0:0:0:ab"
        );
        assert_eq!(ip_id("::ffff:10.1.2.3".parse().unwrap()).id, "10.1.2.3");
    }

    #[test]
    fn fixup_rules() {
        let world = Acl::new(perms::ALL, "world", "anyone");
        assert_eq!(fixup(&[], &[]), Err(Code::InvalidAcl));
        assert_eq!(
            fixup(&[world.clone(), world.clone()], &[]),
            Ok(vec![world.clone()])
        );
        assert_eq!(
            fixup(&[Acl::new(perms::ALL, "world", "everyone")], &[]),
            Err(Code::InvalidAcl)
        );
        // auth expands to the digest ids only; ip and super are not "authenticated" ids.
        let auth = Acl::new(perms::READ | perms::WRITE, "auth", "ignored");
        let session = ids(&[
            ("ip", "127.0.0.1"),
            ("super", ""),
            ("digest", "u:h"),
            ("digest", "v:g"),
        ]);
        assert_eq!(
            fixup(std::slice::from_ref(&auth), &session),
            Ok(vec![
                Acl::new(3, "digest", "u:h"),
                Acl::new(3, "digest", "v:g")
            ])
        );
        assert_eq!(
            fixup(std::slice::from_ref(&auth), &ids(&[("ip", "127.0.0.1")])),
            Err(Code::InvalidAcl)
        );
        assert_eq!(fixup(&[auth], &[]), Err(Code::InvalidAcl));
        // digest ids need exactly two pieces around ':' (trailing empties dropped).
        assert!(fixup(&[Acl::new(1, "digest", "u:h")], &[]).is_ok());
        assert!(fixup(&[Acl::new(1, "digest", ":h")], &[]).is_ok());
        assert_eq!(
            fixup(&[Acl::new(1, "digest", "u")], &[]),
            Err(Code::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(1, "digest", "u:")], &[]),
            Err(Code::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(1, "digest", "u:h:x")], &[]),
            Err(Code::InvalidAcl)
        );
        assert!(fixup(&[Acl::new(1, "ip", "10.0.0.0/8")], &[]).is_ok());
        assert!(fixup(&[Acl::new(1, "ip", "::1")], &[]).is_ok());
        assert_eq!(
            fixup(&[Acl::new(1, "ip", "10.0.0.0/33")], &[]),
            Err(Code::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(1, "ip", "localhost")], &[]),
            Err(Code::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(1, "sasl", "bob")], &[]),
            Err(Code::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(1, "super", "")], &[]),
            Err(Code::InvalidAcl)
        );
    }

    #[test]
    fn masking() {
        let acl = vec![
            Acl::new(perms::ALL, "digest", "user:abc="),
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::READ, "digest", "nocolon"),
            Acl::new(perms::READ, "digest", "a:b\nc:d"),
        ];
        let masked = mask_digests(&acl);
        assert_eq!(masked[0].id.id, "user:x");
        assert_eq!(masked[1], acl[1]);
        assert_eq!(masked[2].id.id, "nocolon");
        assert_eq!(masked[3].id.id, "a:x\nc:x");
    }

    #[test]
    fn cache_counts_and_orders() {
        let mut cache = AclCache::new();
        let a = Acl::open_unsafe();
        let b = vec![Acl::new(perms::READ, "world", "anyone")];
        assert_eq!(cache.intern(&a), 1);
        assert_eq!(cache.intern(&b), 2);
        assert_eq!(cache.intern(&a), 1);
        assert_eq!(cache.refs(1), 2);
        assert_eq!(cache.get(-1), Acl::open_unsafe().as_slice());
        cache.release(1);
        assert_eq!(cache.len(), 2);
        cache.release(1);
        assert_eq!(cache.len(), 1);
        // A released list comes back under a new reference: the counter never goes back.
        assert_eq!(cache.intern(&a), 3);
        let order: Vec<i64> = cache.iter().map(|(r, _)| r).collect();
        assert_eq!(order, vec![2, 3]);
        // Order within a list matters.
        let ab = vec![a[0].clone(), b[0].clone()];
        let ba = vec![b[0].clone(), a[0].clone()];
        assert_ne!(cache.intern(&ab), cache.intern(&ba));
        // Unknown references deny everything instead of panicking.
        assert!(!check(cache.get(99), perms::READ, &[]));
        cache.release(99);
        cache.release(-1);
    }

    #[test]
    fn cache_loading_purges_unused() {
        let mut cache = AclCache::new();
        cache.insert_loaded(4, Acl::open_unsafe());
        cache.insert_loaded(7, Acl::read_unsafe());
        cache.add_usage(7);
        cache.purge_unused();
        assert_eq!(cache.iter().map(|(r, _)| r).collect::<Vec<_>>(), vec![7]);
        assert_eq!(cache.intern(&Acl::read_unsafe()), 7);
        assert_eq!(cache.intern(&Acl::open_unsafe()), 8);
    }
}
