//! Majority quorums (ZooKeeper's `QuorumMaj`): a set of servers is a quorum when it holds more
//! than half of the voting members. Observers never count.

use super::Sid;
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumMaj {
    voters: BTreeSet<Sid>,
    observers: BTreeSet<Sid>,
}

impl QuorumMaj {
    pub fn new(
        voters: impl IntoIterator<Item = Sid>,
        observers: impl IntoIterator<Item = Sid>,
    ) -> QuorumMaj {
        let voters: BTreeSet<Sid> = voters.into_iter().collect();
        let observers: BTreeSet<Sid> = observers
            .into_iter()
            .filter(|o| !voters.contains(o))
            .collect();
        assert!(!voters.is_empty(), "an ensemble needs at least one voter");
        QuorumMaj { voters, observers }
    }

    pub fn is_voter(&self, sid: Sid) -> bool {
        self.voters.contains(&sid)
    }

    pub fn is_member(&self, sid: Sid) -> bool {
        self.voters.contains(&sid) || self.observers.contains(&sid)
    }

    pub fn voters(&self) -> impl Iterator<Item = Sid> + '_ {
        self.voters.iter().copied()
    }

    pub fn members(&self) -> impl Iterator<Item = Sid> + '_ {
        self.voters.iter().chain(&self.observers).copied()
    }

    /// More than half of the voters are in `acks`.
    pub fn contains_quorum<'a>(&self, acks: impl IntoIterator<Item = &'a Sid>) -> bool {
        let counted = acks.into_iter().filter(|s| self.voters.contains(s)).count();
        counted > self.voters.len() / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities_of_voters_only() {
        let q = QuorumMaj::new([1, 2, 3], [4]);
        assert!(!q.contains_quorum(&[1]));
        assert!(q.contains_quorum(&[1, 3]));
        assert!(!q.contains_quorum(&[1, 4]), "observers do not count");
        let five = QuorumMaj::new(1..=5, []);
        assert!(!five.contains_quorum(&[1, 2]));
        assert!(five.contains_quorum(&[1, 2, 5]));
    }
}
