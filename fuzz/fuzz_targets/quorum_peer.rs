//! The leader-learner stream as a peer could send it, into the production ensemble core: the
//! bytes are cut into chunks, fed to the incremental QuorumPacket decoder, and every packet
//! it yields is delivered over a real quorum link of a 3-server simulated ensemble (to the
//! leader or to a follower, by the first byte), after which the simulation runs on.
//!
//! Checked: the decoder and every packet handler (discovery, sync, broadcast, REQUEST,
//! REVALIDATE, PING) never panic on any input; a bad packet at worst ends a role.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use zabd::jute::quorum_stream::{QuorumStreamDecoder, StreamLimits};
use zabd::sim::Sim;

fuzz_target!(|data: &[u8]| {
    let Some((&route, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = QuorumStreamDecoder::new(StreamLimits::new(1 << 20));
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    // Chunks of 1..=16 bytes, sized by the stream itself, exercise the incremental paths.
    let mut rest = stream;
    while !rest.is_empty() && packets.len() < 64 {
        let n = (usize::from(rest[0] % 16) + 1).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.next(&mut buf) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    if packets.is_empty() {
        return;
    }
    let mut sim = Sim::new(u64::from(route), 3, 0);
    if !sim.run_until_serving(20_000) {
        return;
    }
    let leader = sim.leader().expect("serving ensembles have a leader");
    let node = if route & 1 == 0 { leader } else { (leader + 1) % 3 };
    for p in packets {
        sim.inject_packet(node, usize::from(route >> 1) % 2, p);
        sim.run_for(5);
    }
    sim.run_for(1_000);
});
