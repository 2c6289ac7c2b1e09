// Package agent is the node agent, `faultline agent`: it applies network faults inside the network
// namespaces of its own node (a pod's, a named one, or its host's) for a run that talks to it over
// mutual TLS (package agentapi), and holds each fault on a lease the run renews.
//
// Every fault goes to the agent's own ledger (safety/ledger, a bbolt file in the state directory)
// before it is applied, with its lease's expiry in the entry's Meta. One goroutine, the keeper,
// sleeps until the earliest expiry and reverts what was not renewed: a run that dies, or loses its
// network, cannot leave a fault behind for longer than its lease. The agent does not revert what it
// holds when it stops: a restarted agent reads its ledger, reverts what expired meanwhile and holds
// the rest again, so a rolling update of the DaemonSet does not end a game day. A fault whose
// namespace is gone (its pod was deleted) is closed as "pod gone", without an error: its rules
// went with the namespace.
package agent
