------------------------------- MODULE Trace -------------------------------
(***************************************************************************)
(* Trace validation: is a run of zabd's simulator a behaviour of Zab.tla?  *)
(*                                                                         *)
(* The simulator (src/sim/trace.rs) writes a run as TraceData.TraceLog, a  *)
(* sequence of events.  Each event names one action of Zab.tla with its    *)
(* servers (i is the leader of a pair, j the follower) and carries what    *)
(* the code held after its step for the servers involved: online, role,    *)
(* ZAB phase, acceptedEpoch, currentEpoch and the durable log (the zxids   *)
(* above the durable snapshot's).  TraceNext replays event l as that       *)
(* action, with every guard of the spec, and requires each observation in  *)
(* the state it reaches.  Everything the trace leaves unobserved (channel  *)
(* contents, leader bookkeeping, commitIdx, ghost variables) is computed   *)
(* by the spec itself, and the invariants of Zab.tla are checked on the    *)
(* way.                                                                    *)
(*                                                                         *)
(* Verdict: the invariant TraceAccepted (l <= Len(TraceLog)) is violated   *)
(* exactly when the whole trace was replayed, so TLC reporting it violated *)
(* means "accepted"; "No error has been found" means no behaviour of the   *)
(* spec matches, and the depth TLC reports tells how many events matched   *)
(* (depth - 1).  spec/run_tlc.sh turns this into ok/FAIL.                  *)
(***************************************************************************)
EXTENDS Zab, TraceData

VARIABLE l   \* the next event of TraceLog to replay

ZxidsOf(h) == [k \in DOMAIN h |-> h[k].zxid]

\* the code's durable log is a snapshot at zxid b (<<0, 0>>: none) and the txns
\* logged above it; the spec's history holds every txn of both
HistoryMatches(h, b, lg) ==
    LET z == ZxidsOf(h) IN
    IF b = <<0, 0>> THEN z = lg
    ELSE \E k \in DOMAIN z : z[k] = b /\ SubSeq(z, k + 1, Len(z)) = lg

ObservationHolds(o) ==
    /\ online'[o.s] = o.online
    /\ acceptedEpoch'[o.s] = o.ae
    /\ currentEpoch'[o.s] = o.ce
    /\ HistoryMatches(history'[o.s], o.base, o.log)
    /\ o.online => /\ state'[o.s] = o.state
                   /\ zabState'[o.s] = o.zab

Replay(e) ==
    CASE e.a = "ElectLeader"                -> ElectLeader(e.i)
      [] e.a = "FollowerSendFOLLOWERINFO"   -> FollowerSendFOLLOWERINFO(e.j, e.i)
      [] e.a = "LeaderProcessFOLLOWERINFO"  -> LeaderProcessFOLLOWERINFO(e.i, e.j)
      [] e.a = "FollowerProcessLEADERINFO"  -> FollowerProcessLEADERINFO(e.j, e.i)
      [] e.a = "LeaderProcessACKEPOCH"      -> LeaderProcessACKEPOCH(e.i, e.j)
      [] e.a = "LeaderSyncFollower"         -> LeaderSyncFollower(e.i, e.j)
      [] e.a = "FollowerProcessSyncMessage" -> FollowerProcessSyncMessage(e.j, e.i)
      [] e.a = "FollowerProcessNEWLEADER"   -> FollowerProcessNEWLEADER(e.j, e.i)
      [] e.a = "LeaderProcessACKLD"         -> LeaderProcessACKLD(e.i, e.j)
      [] e.a = "FollowerProcessUPTODATE"    -> FollowerProcessUPTODATE(e.j, e.i)
      [] e.a = "ClientRequest"              -> ClientRequest(e.i)
      [] e.a = "FollowerProcessPROPOSAL"    -> FollowerProcessPROPOSAL(e.j, e.i)
      [] e.a = "LeaderProcessACK"           -> LeaderProcessACK(e.i, e.j)
      [] e.a = "FollowerProcessCOMMIT"      -> FollowerProcessCOMMIT(e.j, e.i)
      [] e.a = "Crash"                      -> Crash(e.i)
      [] e.a = "Restart"                    -> Restart(e.i)
      [] e.a = "LoseMessage"                -> LoseMessage(e.i, e.j)
      [] e.a = "Timeout"                    -> Timeout(e.i)
      [] OTHER                              -> FALSE

TraceInit == Init /\ l = 1

TraceNext ==
    /\ l <= Len(TraceLog)
    /\ Replay(TraceLog[l])
    /\ \A k \in DOMAIN TraceLog[l].obs : ObservationHolds(TraceLog[l].obs[k])
    /\ l' = l + 1

TraceSpec == TraceInit /\ [][TraceNext]_<<vars, l>>

\* Violated when the whole trace has been replayed: the trace is accepted.
TraceAccepted == l <= Len(TraceLog)
=============================================================================
