//! Records of jute module `org.apache.zookeeper.data`.

use super::jute_record;

jute_record! {
    /// An identity: `world:anyone`, `digest:user:hash`, `ip:10.0.0.0/8`, `auth:`.
    pub struct Id {
        pub scheme: String,
        pub id: String,
    }
}

jute_record! {
    /// A permission set granted to an identity.
    pub struct Acl {
        pub perms: i32,
        pub id: Id,
    }
}

jute_record! {
    /// A znode's metadata as clients see it (68 bytes on the wire).
    pub struct Stat {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub data_length: i32,
        pub num_children: i32,
        pub pzxid: i64,
    }
}

jute_record! {
    /// A znode's metadata as snapshots store it: `Stat` without the two derived counts.
    pub struct StatPersisted {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub pzxid: i64,
    }
}

jute_record! {
    /// One authenticated identity of a session, as `whoAmI` reports it.
    pub struct ClientInfo {
        pub auth_scheme: String,
        pub user: String,
    }
}

/// `ZooDefs.Perms`.
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 1 << 1;
    pub const CREATE: i32 = 1 << 2;
    pub const DELETE: i32 = 1 << 3;
    pub const ADMIN: i32 = 1 << 4;
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

impl Id {
    pub fn new(scheme: &str, id: &str) -> Id {
        Id {
            scheme: scheme.to_owned(),
            id: id.to_owned(),
        }
    }
}

impl Acl {
    pub fn new(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id::new(scheme, id),
        }
    }

    /// `ZooDefs.Ids.OPEN_ACL_UNSAFE`.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::ALL, "world", "anyone")]
    }

    /// `ZooDefs.Ids.READ_ACL_UNSAFE`.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::READ, "world", "anyone")]
    }
}

impl StatPersisted {
    /// The client view of this stat, given the two counts the server derives.
    pub fn to_stat(&self, data_length: i32, num_children: i32) -> Stat {
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion,
            aversion: self.aversion,
            ephemeral_owner: self.ephemeral_owner,
            data_length,
            num_children,
            pzxid: self.pzxid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::{decode_exact, encode_to_vec};

    #[test]
    fn stat_is_68_bytes_in_field_order() {
        let stat = Stat {
            czxid: 1,
            pzxid: 11,
            num_children: 10,
            ..Stat::default()
        };
        let bytes = encode_to_vec(&stat);
        assert_eq!(bytes.len(), 68);
        assert_eq!(&bytes[0..8], &1i64.to_be_bytes());
        assert_eq!(&bytes[56..60], &10i32.to_be_bytes());
        assert_eq!(&bytes[60..68], &11i64.to_be_bytes());
        assert_eq!(decode_exact::<Stat>(&bytes).unwrap(), stat);
    }
}
