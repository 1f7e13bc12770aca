-------------------------------- MODULE Zab --------------------------------
(***************************************************************************)
(* Zab as zabd implements it: Apache ZooKeeper's "Zab 1.0" in the shape of *)
(* the Java code of 3.8/3.9 (Leader, LearnerHandler, Learner, Follower),   *)
(* written before the Rust code, which now follows it (src/quorum).        *)
(*                                                                         *)
(* Phases of a server: ELECTION (LOOKING) -> DISCOVERY -> SYNCHRONIZATION  *)
(* -> BROADCAST.  Message flow on one leader/follower connection:          *)
(*                                                                         *)
(*   F -> L  FOLLOWERINFO(acceptedEpoch)                                   *)
(*   L -> F  LEADERINFO(newEpoch)     newEpoch = max accepted of a quorum+1*)
(*   F -> L  ACKEPOCH(currentEpoch or -1, lastZxid)                        *)
(*   L -> F  DIFF | TRUNC | SNAP, then PROPOSAL (+COMMIT) ..., NEWLEADER   *)
(*   F -> L  ACK(NEWLEADER), then ACKs of the proposals it just logged     *)
(*   L -> F  UPTODATE           (after a quorum ACKed NEWLEADER)           *)
(*   L -> F  PROPOSAL ...  F -> L ACK ...  L -> F COMMIT ...               *)
(*                                                                         *)
(* Every action is one server handling one event.  Each action is          *)
(* implemented by a Rust handler in src/quorum: spec/README.md maps every  *)
(* action to its file and function, and tests/spec_map.rs fails when a     *)
(* handler named there no longer exists.                                   *)
(*                                                                         *)
(* Modelling decisions (each one is part of the contract with the code):   *)
(*  - zxid = epoch<<32 | counter is written <<epoch, counter>> and compared*)
(*    lexicographically, which is the same order.                          *)
(*  - A channel msgs[i][j] is one TCP connection from i to j: FIFO, and    *)
(*    when it fails both directions are lost and both ends notice it in    *)
(*    the same step (the follower goes back to LOOKING, the leader drops   *)
(*    its learner handler).  Losing one message in the middle of a         *)
(*    connection while later ones arrive is not TCP and is not modelled;   *)
(*    zabd must never process a packet from a connection it has closed.   *)
(*  - Durable: acceptedEpoch, currentEpoch, history (txn log + snapshot).  *)
(*    Everything else is volatile and lost by Crash.                       *)
(*  - Leader election is an oracle (ElectLeader): a LOOKING server becomes *)
(*    a LEADING candidate if no server of some quorum of live servers has a*)
(*    larger (currentEpoch, lastZxid).  FLE's sid tie-break is left out:   *)
(*    that only adds behaviours and keeps the model symmetric in server    *)
(*    ids.  Safety never relies on the oracle: LeaderProcessACKEPOCH       *)
(*    rejects a more up-to-date follower, as waitForEpochAck does.         *)
(*  - Observers are not modelled (they never count in any quorum).         *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets, TLC

CONSTANTS
    Server,          \* the ensemble (all participants)
    Nil,             \* "no server"
    MaxEpoch,        \* bound: largest epoch a leader may propose
    MaxTxn,          \* bound: number of client writes
    MaxCrash,        \* bound: number of Crash steps
    MaxLoss,         \* bound: number of LoseMessage steps (connection failures)
    MaxTimeout,      \* bound: number of Timeout steps (a server gives up its role)
    CommitLogCount,  \* size of the leader's in-memory committed log (zookeeper.commitLogCount)
    Bug              \* "None" or the name of a deliberately injected bug (negative controls)

ASSUME Cardinality(Server) >= 2 /\ Nil \notin Server
ASSUME Bug \in {"None", "CommitWithoutQuorum", "SkipTrunc", "NoNewLeaderAck",
                "AckEpochTwice", "KeepAcksAcrossReconnect", "EpochBeforeLog"}

VARIABLES
    \* ---- durable per server ----
    acceptedEpoch,   \* last epoch acknowledged in LEADERINFO (file acceptedEpoch)
    currentEpoch,    \* epoch of the last NEWLEADER processed (file currentEpoch)
    history,         \* logged transactions: sequence of [zxid, value]
    \* ---- volatile per server ----
    online,          \* FALSE between Crash and Restart
    state,           \* LOOKING / FOLLOWING / LEADING
    zabState,        \* ELECTION / DISCOVERY / SYNCHRONIZATION / BROADCAST
    commitIdx,       \* history[1..commitIdx] is delivered (applied, visible to clients)
    \* ---- volatile, follower side (Learner.syncWithLeader) ----
    leaderOf,        \* the leader this server follows, or Nil
    syncMode,        \* NONE (awaiting DIFF/TRUNC/SNAP), DIFF, TRUNC, SNAP, NEWLEADER (ACKed it, awaiting UPTODATE)
    snapBuf,         \* SNAP contents held in memory until NEWLEADER
    pending,         \* PROPOSALs received during sync, not logged yet (packetsNotLogged)
    syncCommitIdx,   \* prefix of (base \o pending) known committed: sync point + COMMITs seen
    \* ---- volatile, leader side (Leader + one LearnerHandler per learner) ----
    learners,        \* learners with a live connection (LearnerHandler)
    connecting,      \* sids counted in getEpochToPropose (connectingFollowers); cleared
                     \* once the epoch is decided (never read again)
    epochCand,       \* Leader.epoch: max acceptedEpoch seen + 1
    electing,        \* sids counted in waitForEpochAck (electingFollowers); cleared at quorum
    toSync,          \* <<sid, peerLastZxid>> of learners that sent ACKEPOCH, not yet synced
    forwarding,      \* learners that were synced (forwardingFollowers): get PROPOSAL/COMMIT
    nlAcks,          \* sids that ACKed NEWLEADER (newLeaderProposal's ack set); cleared at quorum
    ldWaiting,       \* learners whose CURRENT connection's NEWLEADER ACK was processed while
                     \* the leader waits for the quorum (handlers blocked in waitForNewLeaderAck)
    ackSet,          \* <<zxid, sid>>: ACKs of outstanding proposals (dropped at commit)
    \* ---- network ----
    msgs,            \* msgs[i][j]: FIFO channel from i to j
    \* ---- history (ghost) variables, for the properties only ----
    committedLog,    \* the longest log prefix ever committed by any leader
    committedBy,     \* <<txn, sid>>: sid's durable ACK was counted to commit txn
    proposed,        \* every txn a leader ever proposed
    established,     \* <<epoch, sid>>: sid became an established leader of epoch
    errors,          \* conditions zabd treats as protocol errors (must stay empty)
    \* ---- bounds ----
    nTxn, nCrash, nLoss, nTimeout

durableVars  == <<acceptedEpoch, currentEpoch, history>>
followerVars == <<leaderOf, syncMode, snapBuf, pending, syncCommitIdx>>
leaderVars   == <<learners, connecting, epochCand, electing, toSync, forwarding, nlAcks,
                 ldWaiting, ackSet>>
ghostVars    == <<committedLog, committedBy, proposed, established, errors>>
boundVars    == <<nTxn, nCrash, nLoss, nTimeout>>
vars == <<durableVars, online, state, zabState, commitIdx, followerVars,
          leaderVars, msgs, ghostVars, boundVars>>

-----------------------------------------------------------------------------
(* Helpers *)

Max(a, b) == IF a >= b THEN a ELSE b
Min(a, b) == IF a <= b THEN a ELSE b
Range(s) == {s[k] : k \in DOMAIN s}
IsPrefix(s, t) == Len(s) <= Len(t) /\ SubSeq(t, 1, Len(s)) = s

IsQuorum(S) == 2 * Cardinality(S) > Cardinality(Server)

ZxidLT(a, b) == a[1] < b[1] \/ (a[1] = b[1] /\ a[2] < b[2])
ZxidLE(a, b) == ~ZxidLT(b, a)
LastZxidOf(h) == IF h = <<>> THEN <<0, 0>> ELSE h[Len(h)].zxid
LastZxid(i) == LastZxidOf(history[i])
\* index of zxid z in log h, 0 if absent
IndexOf(h, z) == IF \E k \in 1..Len(h) : h[k].zxid = z
                 THEN CHOOSE k \in 1..Len(h) : h[k].zxid = z ELSE 0
\* StateSummary.isMoreRecentThan, also FLE's vote order without the sid
MoreRecent(ce1, z1, ce2, z2) == ce1 > ce2 \/ (ce1 = ce2 /\ ZxidLT(z2, z1))
\* zabd's check of a proposal's zxid against the last one queued.  ZooKeeper:
\* during sync Learner.enforceContinuousProposal rejects a gap inside an epoch
\* and only warns on a new epoch; in BROADCAST Follower only warns.  zabd
\* rejects any gap, and a new epoch must start at counter 1.
NextZxidOK(last, z) == \/ z[1] = last[1] /\ z[2] = last[2] + 1
                       \/ z[1] > last[1] /\ z[2] = 1

Committed(i) == SubSeq(history[i], 1, commitIdx[i])
IsEstablished(i) == online[i] /\ state[i] = "LEADING" /\ zabState[i] = "BROADCAST"

\* QuorumOK is the only quorum test of the commit rule; a negative control breaks it
QuorumOK(S) == IF Bug = "CommitWithoutQuorum" THEN TRUE ELSE IsQuorum(S)

\* channel helpers (they return a new value for msgs)
Pop(ms, from, to)        == [ms EXCEPT ![from][to] = Tail(@)]
Push(ms, from, to, m)    == [ms EXCEPT ![from][to] = Append(@, m)]
PushSeq(ms, from, to, s) == [ms EXCEPT ![from][to] = @ \o s]
PushAll(ms, from, S, m)  == [a \in Server |-> [b \in Server |->
                               IF a = from /\ b \in S THEN Append(ms[a][b], m) ELSE ms[a][b]]]
Head2(from, to) == msgs[from][to][1]
HasMsg(from, to, type) == msgs[from][to] /= <<>> /\ Head2(from, to).mtype = type

\* Messages
FOLLOWERINFO(e)  == [mtype |-> "FOLLOWERINFO", mepoch |-> e]
LEADERINFO(e)    == [mtype |-> "LEADERINFO", mepoch |-> e]
ACKEPOCH(e, z)   == [mtype |-> "ACKEPOCH", mepoch |-> e, mzxid |-> z]
DIFF(z)          == [mtype |-> "DIFF", mzxid |-> z]
TRUNC(z)         == [mtype |-> "TRUNC", mzxid |-> z]
SNAP(z, snap)    == [mtype |-> "SNAP", mzxid |-> z, msnap |-> snap]
PROPOSAL(t)      == [mtype |-> "PROPOSAL", mtxn |-> t]
COMMIT(z)        == [mtype |-> "COMMIT", mzxid |-> z]
NEWLEADER(z)     == [mtype |-> "NEWLEADER", mzxid |-> z]
ACK(z)           == [mtype |-> "ACK", mzxid |-> z]
UPTODATE         == [mtype |-> "UPTODATE"]

AcksFor(s) == [k \in 1..Len(s) |-> ACK(s[k].zxid)]

-----------------------------------------------------------------------------
(* Leaving a role.  D is a set of servers that stop being leader/follower in *)
(* this step; every connection of a server in D is closed: its channels are *)
(* emptied, a leader drops the learner handlers of servers in D, and (the   *)
(* caller makes D closed under this) the followers of a leader in D leave   *)
(* too.  Durable state and commitIdx are kept (ZooKeeper keeps its          *)
(* ZKDatabase across re-election); Crash clears commitIdx itself.           *)

FollowersOf(D) == {j \in Server : state[j] = "FOLLOWING" /\ leaderOf[j] \in D}
WithFollowers(D) == D \cup FollowersOf(D)

LeaveRole(D) ==
    /\ state'    = [s \in Server |-> IF s \in D THEN "LOOKING" ELSE state[s]]
    /\ zabState' = [s \in Server |-> IF s \in D THEN "ELECTION" ELSE zabState[s]]
    /\ leaderOf' = [s \in Server |-> IF s \in D THEN Nil ELSE leaderOf[s]]
    /\ syncMode' = [s \in Server |-> IF s \in D THEN "NONE" ELSE syncMode[s]]
    /\ snapBuf'  = [s \in Server |-> IF s \in D THEN <<>> ELSE snapBuf[s]]
    /\ pending'  = [s \in Server |-> IF s \in D THEN <<>> ELSE pending[s]]
    /\ syncCommitIdx' = [s \in Server |-> IF s \in D THEN 0 ELSE syncCommitIdx[s]]
    /\ learners'   = [s \in Server |-> IF s \in D THEN {} ELSE learners[s] \ D]
    \* connectingFollowers / electingFollowers / the NEWLEADER ack set are sets of
    \* sids in ZooKeeper: a learner that disconnects stays counted (its promise is
    \* durable: acceptedEpoch, or the logged history + currentEpoch).
    /\ connecting' = [s \in Server |-> IF s \in D THEN {} ELSE connecting[s]]
    /\ epochCand'  = [s \in Server |-> IF s \in D THEN 0 ELSE epochCand[s]]
    /\ electing'   = [s \in Server |-> IF s \in D THEN {} ELSE electing[s]]
    /\ nlAcks'     = [s \in Server |-> IF s \in D THEN {} ELSE nlAcks[s]]
    \* ... but a handler that is gone no longer waits for UPTODATE
    /\ ldWaiting'  = [s \in Server |-> IF s \in D THEN {} ELSE ldWaiting[s] \ D]
    /\ toSync'     = [s \in Server |-> IF s \in D THEN {} ELSE {t \in toSync[s] : t[1] \notin D}]
    /\ forwarding' = [s \in Server |-> IF s \in D THEN {} ELSE forwarding[s] \ D]
    \* zabd: ACKs of outstanding proposals belong to the connection they came on;
    \* when a learner's connection closes the leader forgets them.  ZooKeeper keeps
    \* them (Proposal ack sets hold sids; Leader.removeLearnerHandler does not touch
    \* them), but the learner's re-sync may TRUNC the acked txn from its log (TRUNC
    \* to maxCommittedLog when its lastZxid is an outstanding proposal), after which
    \* the counted ACK no longer stands for a durable copy.  Bug
    \* "KeepAcksAcrossReconnect" restores the ZooKeeper behaviour.
    /\ ackSet' = [s \in Server |-> IF s \in D THEN {}
                                   ELSE IF Bug = "KeepAcksAcrossReconnect" THEN ackSet[s]
                                   ELSE {a \in ackSet[s] : a[2] \notin D}]
    /\ msgs' = [a \in Server |-> [b \in Server |->
                   IF a \in D \/ b \in D THEN <<>> ELSE msgs[a][b]]]

-----------------------------------------------------------------------------
Init ==
    /\ acceptedEpoch = [s \in Server |-> 0]
    /\ currentEpoch  = [s \in Server |-> 0]
    /\ history       = [s \in Server |-> <<>>]
    /\ online    = [s \in Server |-> TRUE]
    /\ state     = [s \in Server |-> "LOOKING"]
    /\ zabState  = [s \in Server |-> "ELECTION"]
    /\ commitIdx = [s \in Server |-> 0]
    /\ leaderOf  = [s \in Server |-> Nil]
    /\ syncMode  = [s \in Server |-> "NONE"]
    /\ snapBuf   = [s \in Server |-> <<>>]
    /\ pending   = [s \in Server |-> <<>>]
    /\ syncCommitIdx = [s \in Server |-> 0]
    /\ learners   = [s \in Server |-> {}]
    /\ connecting = [s \in Server |-> {}]
    /\ epochCand  = [s \in Server |-> 0]
    /\ electing   = [s \in Server |-> {}]
    /\ toSync     = [s \in Server |-> {}]
    /\ forwarding = [s \in Server |-> {}]
    /\ nlAcks     = [s \in Server |-> {}]
    /\ ldWaiting  = [s \in Server |-> {}]
    /\ ackSet     = [s \in Server |-> {}]
    /\ msgs = [a \in Server |-> [b \in Server |-> <<>>]]
    /\ committedLog = <<>>
    /\ committedBy  = {}
    /\ proposed     = {}
    /\ established  = {}
    /\ errors       = {}
    /\ nTxn = 0 /\ nCrash = 0 /\ nLoss = 0 /\ nTimeout = 0

-----------------------------------------------------------------------------
(***************************************************************************)
(* Election (abstract).  FastLeaderElection ends with i LEADING; it then   *)
(* runs Leader.lead(): loadData, getEpochToPropose(self, acceptedEpoch).   *)
(***************************************************************************)
ElectLeader(i) ==
    /\ online[i] /\ state[i] = "LOOKING"
    /\ acceptedEpoch[i] < MaxEpoch
    /\ \E Q \in SUBSET Server :
          /\ i \in Q /\ IsQuorum(Q)
          /\ \A j \in Q : online[j] /\ ~MoreRecent(currentEpoch[j], LastZxid(j),
                                                    currentEpoch[i], LastZxid(i))
    /\ state'      = [state EXCEPT ![i] = "LEADING"]
    /\ zabState'   = [zabState EXCEPT ![i] = "DISCOVERY"]
    /\ connecting' = [connecting EXCEPT ![i] = {i}]
    /\ epochCand'  = [epochCand EXCEPT ![i] = acceptedEpoch[i] + 1]
    /\ UNCHANGED <<durableVars, online, commitIdx, followerVars, learners, electing,
                   toSync, forwarding, nlAcks, ldWaiting, ackSet, msgs, ghostVars, boundVars>>

(***************************************************************************)
(* Discovery                                                               *)
(***************************************************************************)

\* FLE ended with j following i; j connects (Learner.connectToLeader) and
\* registers (registerWithLeader): FOLLOWERINFO carries acceptedEpoch<<32.
\* Which leader j follows is left free (over-approximates FLE's outcome).
FollowerSendFOLLOWERINFO(j, i) ==
    /\ j /= i
    /\ online[j] /\ state[j] = "LOOKING"
    /\ online[i] /\ state[i] = "LEADING"
    /\ state'    = [state EXCEPT ![j] = "FOLLOWING"]
    /\ zabState' = [zabState EXCEPT ![j] = "DISCOVERY"]
    /\ leaderOf' = [leaderOf EXCEPT ![j] = i]
    /\ msgs'     = Push(msgs, j, i, FOLLOWERINFO(acceptedEpoch[j]))
    /\ UNCHANGED <<durableVars, online, commitIdx, syncMode, snapBuf, pending,
                   syncCommitIdx, leaderVars, ghostVars, boundVars>>

\* LearnerHandler reads FOLLOWERINFO and calls getEpochToPropose.  While the
\* new epoch is not decided (waitingForNewEpoch) the sender is counted; when
\* connecting (which holds the leader itself) becomes a quorum, the leader
\* persists acceptedEpoch := max + 1 and every waiting handler sends LEADERINFO.
\* Once decided, a late learner gets LEADERINFO(acceptedEpoch) at once.
LeaderProcessFOLLOWERINFO(i, j) ==
    /\ online[i] /\ state[i] = "LEADING"
    /\ HasMsg(j, i, "FOLLOWERINFO")
    /\ LET m       == Head2(j, i)
           waiting == acceptedEpoch[i] < epochCand[i]     \* waitingForNewEpoch
           cand    == Max(epochCand[i], m.mepoch + 1)
           conn    == connecting[i] \cup {j}
           lrn     == learners[i] \cup {j}
       IN /\ learners' = [learners EXCEPT ![i] = lrn]
          /\ IF waiting
             THEN /\ epochCand'  = [epochCand EXCEPT ![i] = cand]
                  /\ IF IsQuorum(conn)
                     THEN /\ cand <= MaxEpoch        \* model bound
                          /\ acceptedEpoch' = [acceptedEpoch EXCEPT ![i] = cand]
                          \* decided: connecting is never read again (model: cleared)
                          /\ connecting' = [connecting EXCEPT ![i] = {}]
                          \* the leader thread proceeds to waitForEpochAck(self)
                          /\ electing' = [electing EXCEPT ![i] = {i}]
                          /\ msgs' = PushAll(Pop(msgs, j, i), i, (conn \cap lrn) \ {i},
                                             LEADERINFO(cand))
                     ELSE /\ msgs' = Pop(msgs, j, i)
                          /\ connecting' = [connecting EXCEPT ![i] = conn]
                          /\ UNCHANGED <<acceptedEpoch, electing>>
             ELSE /\ msgs' = Push(Pop(msgs, j, i), i, j, LEADERINFO(acceptedEpoch[i]))
                  /\ UNCHANGED <<connecting, epochCand, acceptedEpoch, electing>>
    /\ UNCHANGED <<currentEpoch, history, online, state, zabState, commitIdx,
                   followerVars, toSync, forwarding, nlAcks, ldWaiting, ackSet, ghostVars, boundVars>>

\* Learner.registerWithLeader on LEADERINFO(newEpoch):
\*   newEpoch > acceptedEpoch: persist acceptedEpoch, ACKEPOCH(currentEpoch, lastZxid)
\*   newEpoch = acceptedEpoch: ACKEPOCH(-1, lastZxid): "already acked this epoch",
\*                             does not count for the epoch (can't ack twice)
\*   newEpoch < acceptedEpoch: IOException, back to LOOKING.
FollowerProcessLEADERINFO(j, i) ==
    /\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] = i
    /\ zabState[j] = "DISCOVERY"
    /\ HasMsg(i, j, "LEADERINFO")
    /\ LET e == Head2(i, j).mepoch IN
       IF e < acceptedEpoch[j]
       THEN /\ LeaveRole({j})
            /\ UNCHANGED <<durableVars, online, commitIdx, ghostVars, boundVars>>
       ELSE /\ acceptedEpoch' = [acceptedEpoch EXCEPT ![j] = e]
            /\ zabState' = [zabState EXCEPT ![j] = "SYNCHRONIZATION"]
            /\ msgs' = Push(Pop(msgs, i, j), j, i,
                            ACKEPOCH(IF e > acceptedEpoch[j] \/ Bug = "AckEpochTwice"
                                     THEN currentEpoch[j] ELSE -1,
                                     LastZxid(j)))
            /\ UNCHANGED <<currentEpoch, history, online, state, commitIdx,
                           followerVars, leaderVars, ghostVars, boundVars>>

\* LearnerHandler on ACKEPOCH: waitForEpochAck.  Before the election is
\* finished, a follower more recent than the leader's own summary
\* (currentEpoch, lastZxid at lead() start) makes waitForEpochAck throw in that
\* learner's handler: the connection is closed, the leader keeps waiting (it
\* gives up later by Timeout if no quorum comes).  Otherwise the sender is
\* counted unless it sent -1.  When electing is a quorum: persist
\* currentEpoch := acceptedEpoch and enter SYNCHRONIZATION.  Every handler,
\* counted or not, then syncs its learner (LeaderSyncFollower).
EstablishUpdates(i, Q) ==
    \* startZkServer: lastCommitted := (epoch,0): the whole history is committed.
    /\ commitIdx' = [commitIdx EXCEPT ![i] = Len(history[i])]
    /\ committedLog' = IF Len(history[i]) > Len(committedLog) THEN history[i] ELSE committedLog
    /\ committedBy' = committedBy \cup {<<history[i][k], s>> : k \in 1..Len(history[i]), s \in Q}
    /\ established' = established \cup {<<acceptedEpoch[i], i>>}

LeaderProcessACKEPOCH(i, j) ==
    /\ online[i] /\ state[i] = "LEADING"
    /\ HasMsg(j, i, "ACKEPOCH")
    /\ LET m  == Head2(j, i)
           ce == m.mepoch
           z  == m.mzxid
           el == IF ce /= -1 THEN electing[i] \cup {j} ELSE electing[i]
       IN
       IF zabState[i] /= "DISCOVERY"
       THEN \* electionFinished: waitForEpochAck returns at once
            /\ toSync' = [toSync EXCEPT ![i] = @ \cup {<<j, z>>}]
            /\ msgs' = Pop(msgs, j, i)
            /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, followerVars,
                           learners, connecting, epochCand, electing, forwarding, nlAcks, ldWaiting,
                           ackSet, ghostVars, boundVars>>
       ELSE IF ce /= -1 /\ MoreRecent(ce, z, currentEpoch[i], LastZxid(i))
       THEN \* "Follower is ahead of the leader": this learner's handler closes
            /\ LeaveRole({j})
            /\ UNCHANGED <<durableVars, online, commitIdx, ghostVars, boundVars>>
       ELSE \* electing is never read again once it is a quorum (model: cleared)
            /\ electing' = [electing EXCEPT ![i] = IF IsQuorum(el) THEN {} ELSE el]
            /\ toSync' = [toSync EXCEPT ![i] = @ \cup {<<j, z>>}]
            /\ msgs' = Pop(msgs, j, i)
            /\ IF IsQuorum(el)
               THEN /\ currentEpoch' = [currentEpoch EXCEPT ![i] = acceptedEpoch[i]]
                    /\ IF Bug = "NoNewLeaderAck"
                       THEN \* bug: established without waiting for NEWLEADER ACKs
                            /\ zabState' = [zabState EXCEPT ![i] = "BROADCAST"]
                            /\ UNCHANGED nlAcks
                            /\ EstablishUpdates(i, {i})
                       ELSE /\ zabState' = [zabState EXCEPT ![i] = "SYNCHRONIZATION"]
                            \* the leader thread calls waitForNewLeaderAck(self)
                            /\ nlAcks' = [nlAcks EXCEPT ![i] = {i}]
                            /\ UNCHANGED <<commitIdx, committedLog, committedBy, established>>
               ELSE UNCHANGED <<currentEpoch, zabState, nlAcks, commitIdx, committedLog,
                                committedBy, established>>
            /\ UNCHANGED <<acceptedEpoch, history, online, state, followerVars, learners,
                           connecting, epochCand, forwarding, ldWaiting, ackSet, proposed,
                           errors, boundVars>>

(***************************************************************************)
(* Synchronization                                                         *)
(***************************************************************************)

\* The leader's view used by LearnerHandler.syncFollower:
\*  - committed prefix: before it is established the leader has loaded its
\*    whole log into the data tree (zk.loadData), so all of it; afterwards
\*    commitIdx (committed and applied; the model merges toBeApplied into it);
\*  - lastProcessedZxid: last zxid of that prefix, except that startZkServer
\*    sets it to <<epoch, 0>> until the first commit of the new epoch;
\*  - committedLog (in memory): the last CommitLogCount txns of the prefix.
LeaderCommitted(i) == IF zabState[i] = "BROADCAST" THEN commitIdx[i] ELSE Len(history[i])
LastProcessed(i) ==
    LET c == LeaderCommitted(i) IN
    IF zabState[i] = "BROADCAST" /\ (c = 0 \/ history[i][c].zxid[1] < currentEpoch[i])
    THEN <<currentEpoch[i], 0>>
    ELSE IF c = 0 THEN <<0, 0>> ELSE history[i][c].zxid

\* PROPOSAL+COMMIT for history[a..b] (queueCommittedProposals)
ProposeCommit(h, a, b) ==
    [n \in 1..(2 * Max(0, b - a + 1)) |->
        LET k == a + (n - 1) \div 2 IN
        IF n % 2 = 1 THEN PROPOSAL(h[k]) ELSE COMMIT(h[k].zxid)]

\* The sync decision of LearnerHandler.syncFollower + queueCommittedProposals +
\* Leader.startForwarding, as a record: mode, op packet, committed proposals
\* to queue (from index `from`), and currentZxid (what startForwarding gets).
\* On-disk txnlog sync (peer < minCommittedLog with txnLogSyncEnabled) is not
\* modelled: it only makes DIFF reach further back, which a larger
\* CommitLogCount also does; zabd sends SNAP there.
SyncDecision(i, peer) ==
    LET h     == history[i]
        c     == LeaderCommitted(i)
        lp    == LastProcessed(i)
        lo    == Max(1, c - CommitLogCount + 1)
        empty == c = 0 \/ CommitLogCount = 0
        minZ  == IF empty THEN lp ELSE h[lo].zxid
        maxZ  == IF empty THEN lp ELSE h[c].zxid
        newEpochZxid == peer[2] = 0
        win   == IF empty THEN {} ELSE lo..c
        found == \E k \in win : h[k].zxid = peer
        kf    == IF found THEN CHOOSE k \in win : h[k].zxid = peer ELSE 0
        \* first committed-log entry above peer (exists when peer < maxZ)
        after == {k \in win : ZxidLT(peer, h[k].zxid)}
        ka    == IF after = {} THEN c + 1 ELSE CHOOSE k \in after : \A k2 \in after : k <= k2
        snap  == [mode |-> "SNAP", op |-> SNAP(lp, SubSeq(h, 1, c)), from |-> c + 1, cur |-> lp]
    IN
    CASE peer = lp ->
            \* already in sync: empty DIFF
            [mode |-> "DIFF", op |-> DIFF(peer), from |-> c + 1, cur |-> peer]
      [] ZxidLT(maxZ, peer) /\ ~newEpochZxid ->
            \* learner has txns the leader lacks (it may be an old leader)
            [mode |-> "TRUNC", op |-> TRUNC(maxZ), from |-> c + 1, cur |-> maxZ]
      [] ~empty /\ ZxidLE(minZ, peer) /\ ZxidLE(peer, maxZ) ->
            \* inside the committed log
            IF found
            THEN [mode |-> "DIFF", op |-> DIFF(maxZ), from |-> kf + 1,
                  cur |-> IF kf < c THEN maxZ ELSE peer]
            ELSE IF newEpochZxid
            THEN [mode |-> "DIFF", op |-> DIFF(maxZ), from |-> ka, cur |-> maxZ]
            ELSE IF h[ka].zxid[1] /= peer[1]
            THEN snap      \* "Cannot send TRUNC to peer ... from different epoch"
            ELSE [mode |-> "TRUNC", op |-> TRUNC(h[ka - 1].zxid), from |-> ka, cur |-> maxZ]
      [] OTHER -> snap     \* too far behind the committed log

\* One LearnerHandler syncs its learner, after waitForEpochAck returned
\* (election finished).  All packets are queued at once, under the log lock:
\* DIFF/TRUNC/SNAP, committed proposals (PROPOSAL+COMMIT), outstanding
\* proposals (PROPOSAL only, startForwarding), NEWLEADER(<<epoch,0>>); from
\* now on the learner is in forwardingFollowers and gets every new
\* PROPOSAL/COMMIT behind these packets.
LeaderSyncFollower(i, j) ==
    /\ online[i] /\ state[i] = "LEADING"
    /\ zabState[i] \in {"SYNCHRONIZATION", "BROADCAST"}
    /\ \E t \in toSync[i] :
         /\ t[1] = j
         /\ LET d   == SyncDecision(i, t[2])
                h   == history[i]
                c   == LeaderCommitted(i)
                committedPkts == ProposeCommit(h, d.from, c)
                outstanding   == SelectSeq(SubSeq(h, c + 1, Len(h)),
                                           LAMBDA x : ZxidLT(d.cur, x.zxid))
                outPkts == [k \in 1..Len(outstanding) |-> PROPOSAL(outstanding[k])]
            IN /\ msgs' = PushSeq(msgs, i, j, <<d.op>> \o committedPkts \o outPkts
                                              \o <<NEWLEADER(<<acceptedEpoch[i], 0>>)>>)
               /\ toSync' = [toSync EXCEPT ![i] = @ \ {t}]
               /\ forwarding' = [forwarding EXCEPT ![i] = @ \cup {j}]
    /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, followerVars,
                   learners, connecting, epochCand, electing, nlAcks, ldWaiting, ackSet,
                   ghostVars, boundVars>>

\* Base the follower's pending proposals apply to: the SNAP held in memory,
\* or its (possibly truncated) log.
SyncBase(j) == IF syncMode[j] = "SNAP" THEN snapBuf[j] ELSE history[j]

\* Learner.syncWithLeader, first packet.
\*   DIFF:  nothing to change; the whole log is the sync point.
\*   TRUNC: truncate the log to the zxid, durably and at once (truncateLog).
\*   SNAP:  hold the snapshot in memory; it replaces the log at NEWLEADER.
FollowerProcessSyncMessage(j, i) ==
    /\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] = i
    /\ msgs[i][j] /= <<>>
    /\ Head2(i, j).mtype \in {"DIFF", "TRUNC", "SNAP"}
    /\ LET m == Head2(i, j) IN
       IF zabState[j] /= "SYNCHRONIZATION" \/ syncMode[j] /= "NONE"
       THEN /\ errors' = errors \cup {"unexpected sync packet"}
            /\ msgs' = Pop(msgs, i, j)
            /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, followerVars,
                           leaderVars, committedLog, committedBy, proposed, established,
                           boundVars>>
       ELSE
       /\ msgs' = Pop(msgs, i, j)
       /\ CASE m.mtype = "DIFF" ->
                 /\ syncMode' = [syncMode EXCEPT ![j] = "DIFF"]
                 /\ syncCommitIdx' = [syncCommitIdx EXCEPT ![j] = Len(history[j])]
                 /\ UNCHANGED <<history, commitIdx, snapBuf, errors>>
            [] m.mtype = "TRUNC" ->
                 LET z    == m.mzxid
                     newH == IF Bug = "SkipTrunc" THEN history[j]
                             ELSE SelectSeq(history[j], LAMBDA x : ZxidLE(x.zxid, z))
                 IN /\ history' = [history EXCEPT ![j] = newH]
                    /\ commitIdx' = [commitIdx EXCEPT ![j] = Min(@, Len(newH))]
                    /\ syncMode' = [syncMode EXCEPT ![j] = "TRUNC"]
                    /\ syncCommitIdx' = [syncCommitIdx EXCEPT ![j] = Len(newH)]
                    \* FileTxnLog.truncate keeps the txns <= z; z itself need not be
                    \* in the log (e.g. <<epoch, 0>> from a leader with no commit yet)
                    /\ UNCHANGED <<snapBuf, errors>>
            [] m.mtype = "SNAP" ->
                 /\ snapBuf' = [snapBuf EXCEPT ![j] = m.msnap]
                 /\ syncMode' = [syncMode EXCEPT ![j] = "SNAP"]
                 /\ syncCommitIdx' = [syncCommitIdx EXCEPT ![j] = Len(m.msnap)]
                 /\ UNCHANGED <<history, commitIdx, errors>>
       /\ UNCHANGED <<acceptedEpoch, currentEpoch, online, state, zabState, leaderOf,
                      pending, leaderVars, committedLog, committedBy, proposed,
                      established, boundVars>>

\* NEWLEADER: the follower
\*  1. makes the synced history durable: the SNAP contents or its (possibly
\*     truncated) log, plus every PROPOSAL received during sync (snapshot +
\*     txn log fsync);
\*  2. then persists currentEpoch := newEpoch;
\*  3. then sends ACK(NEWLEADER) followed by ACKs of the proposals of step 1.
\* zabd must keep this order (ZOOKEEPER-3911/4646: ACK before the txns are
\* durable; ZOOKEEPER-4643/4785: currentEpoch before the txns).  The learner
\* thread does the three in a row, so only a process crash can fall between
\* them: CrashDuringNEWLEADER below covers a crash between 1 and 2.
\* zabd choice: ZooKeeper 3.9 persists at NEWLEADER only the proposals it saw
\* a COMMIT for and logs the outstanding ones after UPTODATE; zabd persists
\* all of them in step 1 (one fsync), which is never less durable.
NewLeaderWrites(j) ==
    LET newH == SyncBase(j) \o pending[j] IN
    /\ history' = [history EXCEPT ![j] = newH]
    /\ commitIdx' = [commitIdx EXCEPT ![j] = Min(@, Len(newH))]
    /\ currentEpoch' = [currentEpoch EXCEPT ![j] = acceptedEpoch[j]]

NewLeaderOK(j, i) ==
    /\ zabState[j] = "SYNCHRONIZATION" /\ syncMode[j] \in {"DIFF", "TRUNC", "SNAP"}
    /\ Head2(i, j).mzxid = <<acceptedEpoch[j], 0>>

FollowerProcessNEWLEADER(j, i) ==
    /\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] = i
    /\ HasMsg(i, j, "NEWLEADER")
    /\ IF ~NewLeaderOK(j, i)
       THEN /\ errors' = errors \cup {"unexpected NEWLEADER"}
            /\ msgs' = Pop(msgs, i, j)
            /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, followerVars,
                           leaderVars, committedLog, committedBy, proposed, established,
                           boundVars>>
       ELSE /\ NewLeaderWrites(j)
            /\ msgs' = PushSeq(Pop(msgs, i, j), j, i,
                               <<ACK(<<acceptedEpoch[j], 0>>)>> \o AcksFor(pending[j]))
            /\ pending' = [pending EXCEPT ![j] = <<>>]
            /\ snapBuf' = [snapBuf EXCEPT ![j] = <<>>]
            /\ syncMode' = [syncMode EXCEPT ![j] = "NEWLEADER"]
            /\ UNCHANGED <<acceptedEpoch, online, state, zabState, leaderOf, syncCommitIdx,
                           leaderVars, ghostVars, boundVars>>

\* LearnerHandler after syncFollower: the first packet back must be the ACK of
\* NEWLEADER (waitForNewLeaderAck).  The leader becomes established when the
\* sids that ACKed (itself included) form a quorum: startZkServer, BROADCAST,
\* and every handler that got its ACK queues UPTODATE.  A learner that ACKs
\* after that gets UPTODATE at once.
LeaderProcessACKLD(i, j) ==
    /\ online[i] /\ state[i] = "LEADING"
    /\ HasMsg(j, i, "ACK") /\ Head2(j, i).mzxid[2] = 0
    /\ LET m  == Head2(j, i)
           nl == nlAcks[i] \cup {j}
       IN
       IF j \notin forwarding[i] \/ m.mzxid /= <<acceptedEpoch[i], 0>>
       THEN \* "NEWLEADER ACK from sid ... is from a different epoch"
            /\ errors' = errors \cup {"unexpected NEWLEADER ACK"}
            /\ msgs' = Pop(msgs, j, i)
            /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, followerVars,
                           leaderVars, committedLog, committedBy, proposed, established,
                           boundVars>>
       ELSE IF zabState[i] = "BROADCAST"
       THEN /\ msgs' = Push(Pop(msgs, j, i), i, j, UPTODATE)
            /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, followerVars,
                           leaderVars, ghostVars, boundVars>>
       ELSE \* the ack set is never read again once it is a quorum (model: cleared)
            /\ nlAcks' = [nlAcks EXCEPT ![i] = IF IsQuorum(nl) THEN {} ELSE nl]
            /\ IF IsQuorum(nl)
               THEN /\ zabState' = [zabState EXCEPT ![i] = "BROADCAST"]
                    /\ EstablishUpdates(i, nl)
                    \* only the handlers waiting on their current connection queue
                    \* UPTODATE; nl also counts sids whose connection has since closed
                    /\ msgs' = PushAll(Pop(msgs, j, i), i, ldWaiting[i] \cup {j}, UPTODATE)
                    /\ ldWaiting' = [ldWaiting EXCEPT ![i] = {}]
               ELSE /\ msgs' = Pop(msgs, j, i)
                    /\ ldWaiting' = [ldWaiting EXCEPT ![i] = @ \cup {j}]
                    /\ UNCHANGED <<zabState, commitIdx, committedLog, committedBy, established>>
            /\ UNCHANGED <<durableVars, online, state, followerVars, learners, connecting,
                           epochCand, electing, toSync, forwarding, ackSet, proposed,
                           errors, boundVars>>

\* UPTODATE: deliver everything up to the last COMMIT seen during sync, start
\* serving.  (ZooKeeper logs here what came between NEWLEADER and UPTODATE; in
\* zabd's order that was logged on arrival, so pending is empty and the
\* append below is the identity; it stays to keep ZooKeeper's shape.)  (The
\* ACK of UPTODATE, zxid <<epoch,0>>, is ignored by Leader.processAck and is
\* not modelled.)
FollowerProcessUPTODATE(j, i) ==
    /\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] = i
    /\ HasMsg(i, j, "UPTODATE")
    /\ IF syncMode[j] /= "NEWLEADER"
       THEN /\ errors' = errors \cup {"unexpected UPTODATE"}
            /\ msgs' = Pop(msgs, i, j)
            /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, followerVars,
                           leaderVars, committedLog, committedBy, proposed, established,
                           boundVars>>
       ELSE /\ history' = [history EXCEPT ![j] = @ \o pending[j]]
            /\ msgs' = PushSeq(Pop(msgs, i, j), j, i, AcksFor(pending[j]))
            /\ commitIdx' = [commitIdx EXCEPT ![j] = syncCommitIdx[j]]
            /\ zabState' = [zabState EXCEPT ![j] = "BROADCAST"]
            /\ syncMode' = [syncMode EXCEPT ![j] = "NONE"]
            /\ pending' = [pending EXCEPT ![j] = <<>>]
            /\ syncCommitIdx' = [syncCommitIdx EXCEPT ![j] = 0]
            /\ UNCHANGED <<acceptedEpoch, currentEpoch, online, state, leaderOf, snapBuf,
                           leaderVars, ghostVars, boundVars>>

(***************************************************************************)
(* Broadcast                                                               *)
(***************************************************************************)

\* Commit h[k], h being i's log (Leader.tryToCommit -> commit): COMMIT to every
\* forwarding follower, deliver locally.
CommitUpdates(i, h, k, ackers, ms) ==
    /\ commitIdx' = [commitIdx EXCEPT ![i] = k]
    \* the proposal leaves outstandingProposals, with its ACKs
    /\ ackSet' = [ackSet EXCEPT ![i] = {a \in ackSet[i] \cup {<<h[k].zxid, i>>} : a[1] /= h[k].zxid}]
    /\ msgs' = PushAll(ms, i, forwarding[i], COMMIT(h[k].zxid))
    /\ committedLog' = IF k > Len(committedLog) THEN SubSeq(h, 1, k) ELSE committedLog
    /\ committedBy' = committedBy \cup {<<h[k], s>> : s \in ackers}

\* ProposalRequestProcessor -> Leader.propose: next zxid of the epoch, log it
\* (SyncRequestProcessor) and ACK it locally (AckRequestProcessor), send
\* PROPOSAL to every forwarding follower.
LeaderBroadcastPROPOSE(i, v) ==
    /\ online[i] /\ state[i] = "LEADING" /\ zabState[i] = "BROADCAST"
    /\ LET last == LastZxid(i)
           z    == IF last[1] = currentEpoch[i] THEN <<currentEpoch[i], last[2] + 1>>
                   ELSE <<currentEpoch[i], 1>>
           t    == [zxid |-> z, value |-> v]
           k    == Len(history[i]) + 1
           ms   == PushAll(msgs, i, forwarding[i], PROPOSAL(t))
       IN /\ history' = [history EXCEPT ![i] = Append(@, t)]
          /\ proposed' = proposed \cup {t}
          /\ IF commitIdx[i] + 1 = k /\ QuorumOK({i})
             THEN CommitUpdates(i, Append(history[i], t), k, {i}, ms)  \* one-server quorum, or the bug
             ELSE /\ ackSet' = [ackSet EXCEPT ![i] = @ \cup {<<z, i>>}]
                  /\ msgs' = ms
                  /\ UNCHANGED <<commitIdx, committedLog, committedBy>>
    /\ UNCHANGED <<acceptedEpoch, currentEpoch, online, state, zabState, followerVars,
                   learners, connecting, epochCand, electing, toSync, forwarding, nlAcks,
                   ldWaiting, established, errors>>

\* A client write reaches the leader (directly, or forwarded by a learner as
\* REQUEST) and becomes a proposal; the value is unique per request.
ClientRequest(i) ==
    /\ nTxn < MaxTxn
    /\ LeaderBroadcastPROPOSE(i, nTxn + 1)
    /\ nTxn' = nTxn + 1
    /\ UNCHANGED <<nCrash, nLoss, nTimeout>>

\* Follower.processPacket(PROPOSAL): before NEWLEADER, queue it
\* (packetsNotLogged); in BROADCAST, log it then ACK it (SyncRequestProcessor ->
\* SendAckRequestProcessor).  zabd rejects a non-consecutive zxid.
\* zabd choice: between ACK(NEWLEADER) and UPTODATE (syncMode NEWLEADER) zabd
\* logs and ACKs a proposal as in BROADCAST (Learner::on_proposal); ZooKeeper
\* queues it and logs it after UPTODATE.  Found by trace validation (the
\* simulator trace proposal_during_sync).  A durable log before its ACK is the
\* rule either way; COMMITs are still only remembered until UPTODATE.
FollowerProcessPROPOSAL(j, i) ==
    /\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] = i
    /\ HasMsg(i, j, "PROPOSAL")
    /\ LET t == Head2(i, j).mtxn IN
       IF zabState[j] = "SYNCHRONIZATION" /\ syncMode[j] \in {"DIFF", "TRUNC", "SNAP"}
       THEN /\ pending' = [pending EXCEPT ![j] = Append(@, t)]
            /\ errors' = IF NextZxidOK(LastZxidOf(SyncBase(j) \o pending[j]), t.zxid)
                         THEN errors ELSE errors \cup {"non-consecutive proposal"}
            /\ msgs' = Pop(msgs, i, j)
            /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, leaderOf,
                           syncMode, snapBuf, syncCommitIdx, leaderVars, committedLog,
                           committedBy, proposed, established, boundVars>>
       ELSE IF zabState[j] = "BROADCAST" \/ syncMode[j] = "NEWLEADER"
       THEN /\ history' = [history EXCEPT ![j] = Append(@, t)]
            /\ errors' = IF NextZxidOK(LastZxid(j), t.zxid)
                         THEN errors ELSE errors \cup {"non-consecutive proposal"}
            /\ msgs' = Push(Pop(msgs, i, j), j, i, ACK(t.zxid))
            /\ UNCHANGED <<acceptedEpoch, currentEpoch, online, state, zabState, commitIdx,
                           followerVars, leaderVars, committedLog, committedBy, proposed,
                           established, boundVars>>
       ELSE /\ errors' = errors \cup {"unexpected PROPOSAL"}
            /\ msgs' = Pop(msgs, i, j)
            /\ UNCHANGED <<durableVars, online, state, zabState, commitIdx, followerVars,
                           leaderVars, committedLog, committedBy, proposed, established,
                           boundVars>>

\* Leader.processAck for a proposal ACK (counter > 0).  Ignored if already
\* committed or unknown.  Commits only the next proposal in zxid order when
\* its ACKs form a quorum (tryToCommit).  ACKs are read by the learner handler
\* only after the leader started (waitForStartup), i.e. in BROADCAST.
LeaderProcessACK(i, j) ==
    /\ online[i] /\ state[i] = "LEADING" /\ zabState[i] = "BROADCAST"
    /\ HasMsg(j, i, "ACK") /\ Head2(j, i).mzxid[2] > 0
    /\ LET z      == Head2(j, i).mzxid
           k      == IndexOf(history[i], z)
           acks   == ackSet[i] \cup {<<z, j>>}
           ackers == {s \in Server : <<z, s>> \in acks}
       IN
       IF k = 0 \/ k <= commitIdx[i]
       THEN /\ msgs' = Pop(msgs, j, i)
            /\ UNCHANGED <<ackSet, commitIdx, committedLog, committedBy>>
       ELSE IF k = commitIdx[i] + 1 /\ QuorumOK(ackers)
            THEN CommitUpdates(i, history[i], k, ackers, Pop(msgs, j, i))
            ELSE /\ ackSet' = [ackSet EXCEPT ![i] = acks]
                 /\ msgs' = Pop(msgs, j, i)
                 /\ UNCHANGED <<commitIdx, committedLog, committedBy>>
    /\ UNCHANGED <<durableVars, online, state, zabState, followerVars, learners,
                   connecting, epochCand, electing, toSync, forwarding, nlAcks,
                   ldWaiting, proposed, established, errors, boundVars>>

\* COMMIT: during sync, remember it (packetsCommitted; applied at UPTODATE);
\* in BROADCAST, deliver the next logged txn (FollowerZooKeeperServer.commit:
\* it must be the first pending txn, otherwise ZooKeeper exits).
FollowerProcessCOMMIT(j, i) ==
    /\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] = i
    /\ HasMsg(i, j, "COMMIT")
    /\ LET z == Head2(i, j).mzxid IN
       /\ msgs' = Pop(msgs, i, j)
       /\ IF zabState[j] = "SYNCHRONIZATION" /\ syncMode[j] /= "NONE"
          THEN LET k == IndexOf(SyncBase(j) \o pending[j], z) IN
               IF k = syncCommitIdx[j] + 1
               THEN /\ syncCommitIdx' = [syncCommitIdx EXCEPT ![j] = k]
                    /\ UNCHANGED <<commitIdx, errors>>
               ELSE /\ errors' = errors \cup {"COMMIT out of order in sync"}
                    /\ UNCHANGED <<syncCommitIdx, commitIdx>>
          ELSE IF zabState[j] = "BROADCAST"
                  /\ commitIdx[j] < Len(history[j]) /\ history[j][commitIdx[j] + 1].zxid = z
          THEN /\ commitIdx' = [commitIdx EXCEPT ![j] = @ + 1]
               /\ UNCHANGED <<syncCommitIdx, errors>>
          ELSE /\ errors' = errors \cup {"COMMIT of a txn that is not the next one"}
               /\ UNCHANGED <<syncCommitIdx, commitIdx>>
    /\ UNCHANGED <<durableVars, online, state, zabState, leaderOf, syncMode, snapBuf,
                   pending, leaderVars, committedLog, committedBy, proposed, established,
                   boundVars>>

(***************************************************************************)
(* Failures                                                                *)
(***************************************************************************)

\* Process crash: volatile state is lost, its connections close.
Crash(i) ==
    /\ online[i] /\ nCrash < MaxCrash
    /\ LeaveRole(WithFollowers({i}))
    /\ online' = [online EXCEPT ![i] = FALSE]
    /\ commitIdx' = [commitIdx EXCEPT ![i] = 0]
    /\ nCrash' = nCrash + 1
    /\ UNCHANGED <<durableVars, ghostVars, nTxn, nLoss, nTimeout>>

\* The follower crashes while handling NEWLEADER, after its first durable
\* write and before the second: the synced history is durable but currentEpoch
\* is not (no ACK was sent).  A torn write keeps the sync base and any prefix of
\* the queued proposals (zabd's sync thread installs a SNAP, then appends).  Bug "EpochBeforeLog" is ZooKeeper 3.8's order
\* (setCurrentEpoch, then log the proposals): there currentEpoch is the write
\* that survives.
CrashDuringNEWLEADER(j, i) ==
    /\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] = i
    /\ HasMsg(i, j, "NEWLEADER") /\ NewLeaderOK(j, i)
    /\ nCrash < MaxCrash
    /\ IF Bug = "EpochBeforeLog"
       THEN /\ currentEpoch' = [currentEpoch EXCEPT ![j] = acceptedEpoch[j]]
            /\ UNCHANGED history
       ELSE /\ \E k \in 0..Len(pending[j]) :
                   history' = [history EXCEPT ![j] = SyncBase(j) \o SubSeq(pending[j], 1, k)]
            /\ UNCHANGED currentEpoch
    /\ LeaveRole({j})
    /\ online' = [online EXCEPT ![j] = FALSE]
    /\ commitIdx' = [commitIdx EXCEPT ![j] = 0]
    /\ nCrash' = nCrash + 1
    /\ UNCHANGED <<acceptedEpoch, ghostVars, nTxn, nLoss, nTimeout>>

\* Restart from durable state (acceptedEpoch, currentEpoch, history), LOOKING.
\* A history whose last epoch is newer than currentEpoch is what a crash between
\* the NEWLEADER writes leaves (CrashDuringNEWLEADER); zabd's restore then takes
\* that epoch as currentEpoch (the updatingEpoch marker, as ZooKeeper 3.4 does),
\* where ZooKeeper 3.5+ refuses to start.
Restart(i) ==
    /\ ~online[i]
    /\ online' = [online EXCEPT ![i] = TRUE]
    /\ currentEpoch' = [currentEpoch EXCEPT ![i] = Max(@, LastZxid(i)[1])]
    /\ UNCHANGED <<acceptedEpoch, history, state, zabState, commitIdx, followerVars,
                   leaderVars, msgs, ghostVars, boundVars>>

\* The connection between leader i and follower j fails (message loss,
\* partition): the in-flight packets of both directions are lost, j goes back
\* to LOOKING, i drops j's handler.  A partition is a set of such steps plus
\* Timeouts of the servers that lose their quorum.
LoseMessage(i, j) ==
    /\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] = i
    /\ nLoss < MaxLoss
    /\ LeaveRole({j})
    /\ nLoss' = nLoss + 1
    /\ UNCHANGED <<durableVars, online, commitIdx, ghostVars, nTxn, nCrash, nTimeout>>

\* A leader or follower gives up its role (initLimit/syncLimit timeouts, a
\* leader that lost its quorum of synced followers): it and its followers go
\* back to LOOKING.  Allowed at any time: timing is not modelled.
Timeout(i) ==
    /\ online[i] /\ state[i] /= "LOOKING"
    /\ nTimeout < MaxTimeout
    /\ LeaveRole(WithFollowers({i}))
    /\ nTimeout' = nTimeout + 1
    /\ UNCHANGED <<durableVars, online, commitIdx, ghostVars, nTxn, nCrash, nLoss>>

-----------------------------------------------------------------------------
Next ==
    \/ \E i \in Server : ElectLeader(i)
    \/ \E i, j \in Server : FollowerSendFOLLOWERINFO(j, i)
    \/ \E i, j \in Server : LeaderProcessFOLLOWERINFO(i, j)
    \/ \E i, j \in Server : FollowerProcessLEADERINFO(j, i)
    \/ \E i, j \in Server : LeaderProcessACKEPOCH(i, j)
    \/ \E i, j \in Server : LeaderSyncFollower(i, j)
    \/ \E i, j \in Server : FollowerProcessSyncMessage(j, i)
    \/ \E i, j \in Server : FollowerProcessNEWLEADER(j, i)
    \/ \E i, j \in Server : LeaderProcessACKLD(i, j)
    \/ \E i, j \in Server : FollowerProcessUPTODATE(j, i)
    \/ \E i \in Server : ClientRequest(i)
    \/ \E i, j \in Server : FollowerProcessPROPOSAL(j, i)
    \/ \E i, j \in Server : LeaderProcessACK(i, j)
    \/ \E i, j \in Server : FollowerProcessCOMMIT(j, i)
    \/ \E i \in Server : Crash(i)
    \/ \E i, j \in Server : CrashDuringNEWLEADER(j, i)
    \/ \E i \in Server : Restart(i)
    \/ \E i, j \in Server : LoseMessage(i, j)
    \/ \E i \in Server : Timeout(i)

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
(***************************************************************************)
(* Properties                                                              *)
(***************************************************************************)

Zxids == (0..MaxEpoch) \X (0..MaxTxn)
Txns  == [zxid : Zxids, value : 1..MaxTxn]
Msgs  ==      [mtype : {"FOLLOWERINFO", "LEADERINFO"}, mepoch : 0..MaxEpoch]
         \cup [mtype : {"ACKEPOCH"}, mepoch : -1..MaxEpoch, mzxid : Zxids]
         \cup [mtype : {"DIFF", "TRUNC", "NEWLEADER", "ACK", "COMMIT"}, mzxid : Zxids]
         \cup [mtype : {"SNAP"}, mzxid : Zxids, msnap : Seq(Txns)]
         \cup [mtype : {"PROPOSAL"}, mtxn : Txns]
         \cup [mtype : {"UPTODATE"}]

TypeOK ==
    /\ acceptedEpoch \in [Server -> 0..MaxEpoch]
    /\ currentEpoch  \in [Server -> 0..MaxEpoch]
    /\ \A s \in Server : history[s] \in Seq(Txns) /\ snapBuf[s] \in Seq(Txns)
                         /\ pending[s] \in Seq(Txns)
    /\ online   \in [Server -> BOOLEAN]
    /\ state    \in [Server -> {"LOOKING", "FOLLOWING", "LEADING"}]
    /\ zabState \in [Server -> {"ELECTION", "DISCOVERY", "SYNCHRONIZATION", "BROADCAST"}]
    /\ \A s \in Server : commitIdx[s] \in 0..Len(history[s])
    /\ leaderOf \in [Server -> Server \cup {Nil}]
    /\ syncMode \in [Server -> {"NONE", "DIFF", "TRUNC", "SNAP", "NEWLEADER"}]
    /\ syncCommitIdx \in [Server -> Nat]
    /\ learners \in [Server -> SUBSET Server]
    /\ connecting \in [Server -> SUBSET Server]
    /\ epochCand \in [Server -> 0..(MaxEpoch + 1)]
    /\ electing \in [Server -> SUBSET Server]
    /\ toSync \in [Server -> SUBSET (Server \X Zxids)]
    /\ forwarding \in [Server -> SUBSET Server]
    /\ nlAcks \in [Server -> SUBSET Server]
    /\ ldWaiting \in [Server -> SUBSET Server]
    /\ ackSet \in [Server -> SUBSET (Zxids \X Server)]
    /\ \A a, b \in Server : msgs[a][b] \in Seq(Msgs)
    /\ committedLog \in Seq(Txns)
    /\ proposed \subseteq Txns
    /\ established \subseteq (1..MaxEpoch) \X Server
    /\ nTxn \in 0..MaxTxn /\ nCrash \in 0..MaxCrash
    /\ nLoss \in 0..MaxLoss /\ nTimeout \in 0..MaxTimeout

\* At most one established leader per epoch (history form and state form).
LeaderUniquePerEpoch ==
    /\ \A a, b \in established : a[1] = b[1] => a[2] = b[2]
    /\ \A i, j \in Server : IsEstablished(i) /\ IsEstablished(j)
                            /\ currentEpoch[i] = currentEpoch[j] => i = j

\* Delivered (committed) prefixes of any two servers agree.
PrefixConsistency ==
    \A i, j \in Server : IsPrefix(Committed(i), Committed(j)) \/ IsPrefix(Committed(j), Committed(i))

\* A delivered transaction was proposed by some leader.
Integrity == \A i \in Server : Range(Committed(i)) \subseteq proposed

\* If a server delivers a before b, every server that delivers b delivers a before b.
\* Written as: whatever i delivered before b, j delivered before (its last copy
\* of) b; the same property as the pairwise form, in O(n^2) instead of O(n^4)
\* for trace validation's long logs.
TotalOrder ==
    \A i, j \in Server : \A y \in 1..commitIdx[i] :
        LET cj  == Committed(j)
            at  == {k \in DOMAIN cj : cj[k] = history[i][y]}
            y2  == CHOOSE k \in at : \A k2 \in at : k2 <= k
        IN at /= {} => Range(SubSeq(history[i], 1, y - 1)) \subseteq Range(SubSeq(cj, 1, y2 - 1))

\* If a primary broadcasts a before b, a server that delivers b delivers a before b.
\* (a primary = the leader of an epoch; its proposals are ordered by counter)
LocalPrimaryOrder ==
    \A i \in Server : \A y \in 1..commitIdx[i] : \A a \in proposed :
        (a.zxid[1] = history[i][y].zxid[1] /\ a.zxid[2] < history[i][y].zxid[2]) =>
            \E x \in 1..(y - 1) : history[i][x] = a

\* A server that delivers a of epoch e and b of epoch e' > e delivers a before b.
GlobalPrimaryOrder ==
    \A i \in Server : \A x, y \in 1..commitIdx[i] :
        history[i][x].zxid[1] < history[i][y].zxid[1] => x < y

\* If primary p broadcasts a, and some server delivers b of an epoch older than
\* p's, then p delivered b before broadcasting anything (at establishment).
PrimaryIntegrity ==
    \A p \in Server : IsEstablished(p) =>
        \A j \in Server : \A k \in 1..commitIdx[j] :
            history[j][k].zxid[1] < currentEpoch[p] => history[j][k] \in Range(Committed(p))

\* An established leader holds every transaction committed in an older epoch
\* (the only ones that could have been committed before it was established).
NewLeaderHasAllCommitted ==
    \A i \in Server : IsEstablished(i) =>
        \A k \in 1..Len(committedLog) :
            committedLog[k].zxid[1] < currentEpoch[i] => committedLog[k] \in Range(history[i])

\* After NEWLEADER (in this connection), a follower's log is a prefix of its
\* leader's log (the "ProcessConsistency" invariant of the ZooKeeper TLA+ work).
FollowerPrefixOfLeaderAfterNEWLEADER ==
    \A j \in Server :
        (/\ online[j] /\ state[j] = "FOLLOWING" /\ leaderOf[j] /= Nil
         /\ (syncMode[j] = "NEWLEADER" \/ zabState[j] = "BROADCAST")
         /\ state[leaderOf[j]] = "LEADING")
        => IsPrefix(history[j], history[leaderOf[j]])

\* Every committed transaction is durable on a quorum of logs.
CommittedOnQuorum ==
    \A k \in 1..Len(committedLog) :
        IsQuorum({s \in Server : committedLog[k] \in Range(history[s])})

\* Each log is in strictly increasing zxid order (commits are delivered in zxid order).
LogZxidOrder ==
    \A s \in Server : \A k \in 1..(Len(history[s]) - 1) :
        ZxidLT(history[s][k].zxid, history[s][k + 1].zxid)

\* No handler met a condition zabd treats as a protocol error.
NoProtocolError == errors = {}

\* ---- action properties ----

\* No step removes from a server's log a txn that was committed with that
\* server's ACK counted (TRUNC, SNAP install at NEWLEADER).  A follower may
\* still drop a txn that was committed by others, e.g. a TRUNC decided before
\* the txn got its quorum.
SyncNeverTruncatesCommitted ==
    [][\A s \in Server : \A t \in Range(history[s]) \ Range(history'[s]) :
           <<t, s>> \notin committedBy]_vars

\* The committed log only grows, and so does each live server's delivered prefix.
CommittedLogOnlyGrows ==
    [][/\ IsPrefix(committedLog, committedLog')
       /\ \A s \in Server : online'[s] => IsPrefix(Committed(s), Committed(s)')]_vars
=============================================================================
