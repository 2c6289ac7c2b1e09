// Package proxyserver runs long-lived, named TCP proxies whose toxics experiments switch on and
// off over an HTTP API (`faultline proxy serve`), and holds the proxy-toxics fault kind that does
// the switching from a runbook.
//
// This is how Toxiproxy is used in a docker-compose golden copy: the application is pointed at the
// proxy once and for good; between experiments the proxy passes traffic untouched, and an
// experiment adds latency, a bandwidth cap, resets or a blackhole for its window. The proxy core
// (and its toxics) is package proxy's; this package adds names, ownership and leases.
//
// # Ownership and leases
//
// Every toxic set belongs to an owner (a run's fault: "<run ID>.<fault name>") and is held on a
// lease. The fault renews it every third of the lease while its window lasts and deletes it on
// revert. If the run dies, the server drops the set by itself when the lease runs out, and
// `faultline recover` deletes it at once from the ledger record. Several owners may hold toxics on
// the same proxy at once; they apply in the order the sets were first put. A server that restarts
// starts with no toxics: the safe state.
//
// # Routes
//
//	GET    /healthz                           200 {"status":"ok"}                        (no token)
//	GET    /metrics                           Prometheus exposition                      (no token)
//	GET    /v1/proxies                        ProxiesResponse                            read-only
//	GET    /v1/proxies/{name}                 ProxyStatus; 404 for an unknown proxy     read-only
//	PUT    /v1/proxies/{name}/toxics/{owner}  SetToxicsRequest → SetToxicsResponse      admin
//	DELETE /v1/proxies/{name}/toxics/{owner}  204, also when the owner holds nothing     admin
//	DELETE /v1/toxics                         ResetResponse: every toxic of every proxy admin
//
// Bodies are JSON, decoded strictly (unknown fields are errors, at most 64 KiB). Errors are
// {"error":"…"} with 400 (bad request or toxics), 401/403 (token), 404 (unknown proxy), 413.
// Tokens use the daemon's token file format (TOKEN ROLE NAME lines). Without a token file the
// server answers every call unauthenticated, which the command allows only on a loopback
// address unless told otherwise.
package proxyserver
