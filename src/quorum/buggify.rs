//! BUGGIFY (FoundationDB's `flow/Buggify.h`): fault sites in the sans-IO core where a rare but
//! legal behaviour is worth exercising, such as a SNAP where a DIFF would do, or a link that
//! breaks right after a sync. Each site only picks among behaviours the protocol allows, so a
//! run with buggify on must pass every checker a run without it passes.
//!
//! Off in production: [`Buggify::off`] is a `None`, and every site costs one branch on it.
//! The simulator turns it on with a seed ([`Buggify::seeded`]): decisions come from that seed
//! alone, never from real randomness or time, so a run stays a function of its seeds. As in
//! FoundationDB, each site is enabled or not once per instance (one server's life), and an
//! enabled site fires with its own probability each time the core passes it.

/// The fault sites, one per rare behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The leader syncs a learner by SNAP where a DIFF would do.
    SnapInsteadOfDiff,
    /// A learner sends only the first of the ACKs it may send; the rest go at the next PING
    /// or fsync.
    SplitAcks,
    /// The leader closes a learner's link right after sending it UPTODATE.
    CloseLinkAfterSync,
    /// An outgoing election notification is lost (the election resends on its timeout).
    DropNotification,
    /// The committed log kept for DIFFs is only a few transactions long.
    SmallCommitLog,
}

impl Site {
    pub const ALL: [Site; SITES] = [
        Site::SnapInsteadOfDiff,
        Site::SplitAcks,
        Site::CloseLinkAfterSync,
        Site::DropNotification,
        Site::SmallCommitLog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Site::SnapInsteadOfDiff => "SnapInsteadOfDiff",
            Site::SplitAcks => "SplitAcks",
            Site::CloseLinkAfterSync => "CloseLinkAfterSync",
            Site::DropNotification => "DropNotification",
            Site::SmallCommitLog => "SmallCommitLog",
        }
    }

    /// How often an enabled site fires, in percent: rare enough that the ensemble still makes
    /// progress between firings.
    fn fire_percent(self) -> u64 {
        match self {
            Site::SnapInsteadOfDiff => 30,
            Site::SplitAcks => 20,
            Site::CloseLinkAfterSync => 10,
            Site::DropNotification => 10,
            Site::SmallCommitLog => 100,
        }
    }
}

/// The number of fault sites.
pub const SITES: usize = 5;

/// Percent of sites enabled in one buggified instance (FoundationDB: 25).
const SITE_ENABLE_PERCENT: u64 = 50;

/// Times each site fired, indexed like [`Site::ALL`].
pub type Fired = [u64; SITES];

#[derive(Clone, Debug, Default)]
pub struct Buggify(Option<Box<Active>>);

#[derive(Clone, Debug)]
struct Active {
    rng: crate::rng::XorShift64Star,
    enabled: [bool; SITES],
    fired: Fired,
}

impl Buggify {
    /// Production: no site ever fires.
    pub fn off() -> Buggify {
        Buggify(None)
    }

    /// On, with every decision drawn from `seed`.
    pub fn seeded(seed: u64) -> Buggify {
        let mut a = Active {
            rng: crate::rng::XorShift64Star::seeded(seed),
            enabled: [false; SITES],
            fired: [0; SITES],
        };
        for i in 0..SITES {
            a.enabled[i] = a.next() % 100 < SITE_ENABLE_PERCENT;
        }
        Buggify(Some(Box::new(a)))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// True when `site` should take its rare behaviour now.
    #[inline]
    pub fn fire(&mut self, site: Site) -> bool {
        match &mut self.0 {
            None => false,
            Some(a) => a.fire(site),
        }
    }

    /// Uniform in `lo..=hi`, for a site that fired and needs a size; `lo` when off.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        match &mut self.0 {
            Some(a) if hi > lo => lo + a.next() % (hi - lo + 1),
            _ => lo,
        }
    }

    /// Times each site fired, indexed like [`Site::ALL`].
    pub fn fired(&self) -> Fired {
        self.0.as_ref().map_or([0; SITES], |a| a.fired)
    }
}

impl Active {
    fn next(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn fire(&mut self, site: Site) -> bool {
        let i = site as usize;
        if !self.enabled[i] || self.next() % 100 >= site.fire_percent() {
            return false;
        }
        self.fired[i] += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_fires() {
        let mut b = Buggify::off();
        for site in Site::ALL {
            for _ in 0..100 {
                assert!(!b.fire(site));
            }
        }
        assert_eq!(b.fired(), [0; SITES]);
        assert_eq!(b.range(3, 9), 3);
    }

    #[test]
    fn seeded_is_deterministic_and_counts() {
        let run = |seed| {
            let mut b = Buggify::seeded(seed);
            let hits: Vec<bool> = (0..200).map(|i| b.fire(Site::ALL[i % SITES])).collect();
            (hits, b.fired())
        };
        assert_eq!(run(7), run(7));
        // Some seed enables some site, and its count matches what it returned.
        let (hits, fired) = (1..20).map(run).find(|(h, _)| h.contains(&true)).unwrap();
        assert_eq!(
            fired.iter().sum::<u64>(),
            hits.iter().filter(|&&h| h).count() as u64
        );
    }
}
