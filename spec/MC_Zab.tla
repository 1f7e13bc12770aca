------------------------------- MODULE MC_Zab -------------------------------
(* Model-checking wrapper for Zab.tla: symmetry set and reachability probes. *)
EXTENDS Zab, TLC

Symmetry == Permutations(Server)

(* Reachability probes: each one is expected to be VIOLATED, which shows  *)
(* that the model reaches the situation (see MC_Zab_reach.cfg).           *)
SentInAnyChannel(type) == \E a, b \in Server : \E k \in DOMAIN msgs[a][b] : msgs[a][b][k].mtype = type
NeverDIFF      == ~SentInAnyChannel("DIFF")
NeverTRUNC     == ~SentInAnyChannel("TRUNC")
NeverSNAP      == ~SentInAnyChannel("SNAP")
NeverCommitted == Len(committedLog) = 0
NeverTwoEpochs == \A a, b \in established : a[1] = b[1]
(* A server down with a history newer than its currentEpoch: a crash between  *)
(* the NEWLEADER writes (CrashDuringNEWLEADER), which Restart must recover.   *)
NeverTornNEWLEADER == \A s \in Server : online[s] \/ LastZxid(s)[1] <= currentEpoch[s]
(* Search restriction used only to find a witness faster in a big model   *)
(* (MC_Zab_bug_KeepAcksAcrossReconnect.cfg): at most one LEADING server.   *)
OneLeaderAtATime == Cardinality({s \in Server : state'[s] = "LEADING"}) <= 1
=============================================================================
