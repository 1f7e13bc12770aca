//! Snapshot files through `persistence::read_snapshot` (a reader over a slice), then, as a
//! restart does, into a `TreeLoader`.
//!
//! Input: one flag byte, then the file's bytes. With flag bit 0 set the harness repairs the
//! seals: whenever the reader reports a checksum mismatch it writes the computed checksum at
//! that offset and reads again (at most four times), so the fuzzer gets past the Adler-32
//! seals into the trailer and the tree loader.
//!
//! Checked: nothing panics; a snapshot that reads back whole re-encodes (`write_snapshot`) to
//! bytes that read back to the same contents; a tree loaded from it satisfies the structural
//! invariants of common/invariants.rs (ephemeral nodes with children excepted: a snapshot may
//! hold them).
#![no_main]

#[path = "common/invariants.rs"]
mod invariants;

use libfuzzer_sys::fuzz_target;
use zabd::persistence::{read_snapshot, write_snapshot, SnapshotContents, SnapshotError};
use zabd::tree::{DataNode, TreeLoader};

const REPAIRS_MAX: usize = 4;

fn read(bytes: &mut [u8], repair: bool) -> Result<SnapshotContents, SnapshotError> {
    let mut tries = 0;
    loop {
        match read_snapshot(&bytes[..]) {
            Err(SnapshotError::ChecksumMismatch {
                offset, computed, ..
            }) if repair && tries < REPAIRS_MAX => {
                let at = usize::try_from(offset).expect("offset fits");
                assert!(at + 8 <= bytes.len(), "checksum offset {at} past the end");
                bytes[at..at + 8].copy_from_slice(&computed.to_be_bytes());
                tries += 1;
            }
            other => return other,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    let Ok(contents) = read(&mut bytes, flags & 1 != 0) else {
        return;
    };
    assert!(
        !contents.nodes.is_empty(),
        "a snapshot read back without a root"
    );
    assert_eq!(contents.nodes[0].path, "/", "the root comes first");

    let mut written = Vec::new();
    write_snapshot(&mut written, &contents).expect("a snapshot read back can be written");
    let again = read_snapshot(&written[..]).expect("a re-encoded snapshot reads back");
    assert_eq!(again, contents);

    // Finding H1 (fixed): a path given twice, or with an empty component, must be refused
    // by the loader rather than load into a tree whose child lists and node map disagree.
    let mut seen = std::collections::HashSet::new();
    let well_formed = contents
        .nodes
        .iter()
        .all(|n| seen.insert(n.path.as_str()) && !n.path.contains("//"));
    let mut loader = TreeLoader::new(flags & 2 != 0);
    for (r, acl) in &contents.acls {
        loader.acl(*r, acl.clone());
    }
    for n in &contents.nodes {
        let node = DataNode::new(n.data.clone(), n.acl, n.stat.clone());
        if loader.node(&n.path, node).is_err() {
            return;
        }
    }
    assert!(
        well_formed,
        "the loader accepted a repeated path or an empty path component"
    );
    let zxid = contents.last_processed_zxid.unwrap_or(0);
    if let Ok(tree) = loader.finish(zxid) {
        invariants::check_tree(&tree, false);
    }
});
