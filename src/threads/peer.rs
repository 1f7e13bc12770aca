//! The `zabd-core` thread of an ensemble member: owns the sans-IO
//! [`QuorumPeer`](crate::quorum::peer::QuorumPeer) and is its only caller. It waits on five
//! neighbours (client inputs, durable notices, disk-command answers, election notifications,
//! quorum-link events) or the next timer, steps the peer with each, and routes what comes
//! out: appends and disk commands to the sync thread in order, snapshots to the snapshot
//! thread, notifications to the election thread, packets to the quorum-link thread, the rest
//! to the client thread.

use super::core::{WallClock, INPUT_BATCH_MAX};
use super::election::{ElectionEvent, ElectionHandle};
use super::quorum_link::{LinkCommand, LinkEvent, LinkHandle};
use super::sync::{SyncCommand, SyncStats};
use crate::persistence::SnapshotData;
use crate::quorum::peer::{PeerInput, QuorumPeer};
use crate::quorum::replica::{DiskDone, PeerOutput};
use crate::server::{Input, Output};
use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError};
use mio::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The peer core's channel ends and neighbours.
pub struct PeerChannels {
    pub inputs: Receiver<Input>,
    pub persisted: Receiver<i64>,
    pub disk_done: Receiver<DiskDone>,
    pub election_events: Receiver<ElectionEvent>,
    pub link_events: Receiver<LinkEvent>,
    pub outputs: Sender<Vec<Output>>,
    pub client_waker: Arc<Waker>,
    pub sync: Sender<SyncCommand>,
    pub sync_stats: Arc<SyncStats>,
    pub snapshots: Option<Sender<Box<SnapshotData>>>,
    pub roll_log: Arc<AtomicBool>,
    pub election: ElectionHandle,
    pub links: LinkHandle,
}

pub struct PeerLoop {
    peer: QuorumPeer,
    clock: WallClock,
    ch: PeerChannels,
    out: Vec<PeerOutput>,
}

/// Why the loop stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerExit {
    ClientGone,
    SyncGone,
}

impl PeerLoop {
    pub fn new(peer: QuorumPeer, ch: PeerChannels) -> PeerLoop {
        PeerLoop {
            peer,
            clock: WallClock::default(),
            ch,
            out: Vec::new(),
        }
    }

    pub fn run(mut self) -> PeerExit {
        let now_ms = self.clock.now_ms();
        self.peer.start(now_ms, &mut self.out);
        loop {
            if let Err(exit) = self.route() {
                return exit;
            }
            self.wait();
            if let Err(exit) = self.drain() {
                return exit;
            }
            let now_ms = self.clock.now_ms();
            if now_ms >= self.peer.next_tick_ms() {
                self.peer.tick(now_ms, &mut self.out);
            }
        }
    }

    fn wait(&mut self) {
        let deadline = self.clock.deadline(self.peer.next_tick_ms());
        let mut select = Select::new();
        select.recv(&self.ch.inputs);
        select.recv(&self.ch.persisted);
        select.recv(&self.ch.disk_done);
        select.recv(&self.ch.election_events);
        select.recv(&self.ch.link_events);
        let _ = select.ready_deadline(deadline);
    }

    fn step(&mut self, input: PeerInput) {
        let now_ms = self.clock.now_ms();
        self.peer.step(now_ms, input, &mut self.out);
    }

    /// Durable notices and disk answers first (they release waiting work), then bounded
    /// batches of everything else.
    fn drain(&mut self) -> Result<(), PeerExit> {
        loop {
            match self.ch.persisted.try_recv() {
                Ok(zxid) => {
                    let sync = self.ch.sync_stats.counters();
                    self.step(PeerInput::Client(Input::Persisted { zxid, sync }));
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(PeerExit::SyncGone),
            }
        }
        while let Ok(done) = self.ch.disk_done.try_recv() {
            self.step(PeerInput::Disk(done));
        }
        for _ in 0..INPUT_BATCH_MAX {
            match self.ch.link_events.try_recv() {
                Ok(LinkEvent::Up { link, peer }) => self.step(PeerInput::LinkUp { link, peer }),
                Ok(LinkEvent::Packet { link, packet }) => {
                    self.step(PeerInput::Packet { link, packet })
                }
                Ok(LinkEvent::Closed { link }) => self.step(PeerInput::LinkClosed { link }),
                Err(_) => break,
            }
        }
        for _ in 0..INPUT_BATCH_MAX {
            match self.ch.election_events.try_recv() {
                Ok(ElectionEvent::Notification { from, notification }) => {
                    self.step(PeerInput::Election { from, notification })
                }
                Err(_) => break,
            }
        }
        for _ in 0..INPUT_BATCH_MAX {
            match self.ch.inputs.try_recv() {
                Ok(input) => self.step(PeerInput::Client(input)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(PeerExit::ClientGone),
            }
        }
        Ok(())
    }

    fn route(&mut self) -> Result<(), PeerExit> {
        let mut batch = Vec::new();
        let mut entries = Vec::new();
        for output in std::mem::take(&mut self.out) {
            match output {
                PeerOutput::Server(Output::Append { entries: more }) => entries.extend(more),
                PeerOutput::Server(Output::Snapshot(s)) => self.hand_over(s),
                PeerOutput::Server(other) => batch.push(other),
                PeerOutput::Disk(cmd) => {
                    self.flush_appends(&mut entries)?;
                    self.to_sync(SyncCommand::Disk(cmd))?;
                }
                PeerOutput::Election { to, notification } => {
                    self.ch.election.send(to, notification)
                }
                PeerOutput::Connect { link, addr } => {
                    self.ch.links.send(LinkCommand::Connect { link, addr })
                }
                PeerOutput::Send { link, packet } => self.ch.links.send(LinkCommand::Send {
                    link,
                    packets: vec![packet],
                }),
                PeerOutput::CloseLink { link } => self.ch.links.send(LinkCommand::Close { link }),
                PeerOutput::CloseAllLinks => self.ch.links.send(LinkCommand::CloseAll),
            }
        }
        self.flush_appends(&mut entries)?;
        if !batch.is_empty() {
            if self.ch.outputs.send(batch).is_err() {
                return Err(PeerExit::ClientGone);
            }
            if let Err(e) = self.ch.client_waker.wake() {
                log::error!("cannot wake the client thread: {e}");
            }
        }
        Ok(())
    }

    fn flush_appends(
        &mut self,
        entries: &mut Vec<crate::jute::txn::TxnEntry>,
    ) -> Result<(), PeerExit> {
        if entries.is_empty() {
            return Ok(());
        }
        self.to_sync(SyncCommand::Append(std::mem::take(entries)))
    }

    fn to_sync(&self, cmd: SyncCommand) -> Result<(), PeerExit> {
        self.ch.sync.send(cmd).map_err(|_| {
            log::error!("the sync thread stopped; stopping the core");
            PeerExit::SyncGone
        })
    }

    fn hand_over(&self, snapshot: Box<SnapshotData>) {
        let Some(tx) = &self.ch.snapshots else {
            return;
        };
        match tx.try_send(snapshot) {
            Ok(()) => self.ch.roll_log.store(true, Ordering::Relaxed),
            Err(TrySendError::Full(s)) => {
                log::warn!("Too busy to snap, skipping snapshot at 0x{:x}", s.zxid)
            }
            Err(TrySendError::Disconnected(_)) => log::error!("the snapshot thread stopped"),
        }
    }
}
