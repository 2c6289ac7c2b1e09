// Package api is the faultline daemon's HTTP API: JSON over net/http, bearer tokens with two
// roles, an audit log of every state-changing call, optional TLS.
//
// # Routes
//
//	GET  /healthz                  200 {"status":"ok"} while the process serves            (no token)
//	GET  /readyz                   200 {"ready":true} / 503 {"ready":false}: Control.Ready  (no token)
//	GET  /metrics                  Prometheus exposition            (no token unless Config.MetricsAuth)
//	GET  /api/v1/status            StatusResponse: leader, paused, ready, schedules, active runs
//	GET  /api/v1/schedules         SchedulesResponse
//	GET  /api/v1/runs              RunsResponse; query: schedule, runbook, verdict, since (RFC 3339
//	                               or a duration back from now, e.g. 24h), limit (finished runs,
//	                               default 100, at most 1000)
//	GET  /api/v1/runs/{id}         RunResponse: {"state":"finished","summary":…,"result":…} from
//	                               history, or {"state":"running","summary":…} while it runs
//	POST /api/v1/runs              admin; {"runbook":"…"} → 202 {"runId":…,"location":…} + Location
//	POST /api/v1/runs/{id}/halt    admin; {"reason":"…"} (optional) → 200 {"halted":["id"]} once
//	                               the run's faults are reverted
//	POST /api/v1/halt              admin; kill switch, every run; {"reason":"…"} → 200 {"halted":[…]}
//	POST /api/v1/pause             admin; {"reason":"…"} (optional) → 200 {"paused":true}
//	POST /api/v1/resume            admin; {"reason":"…"} (optional) → 200 {"paused":false}
//	POST /api/v1/reload            admin; {"reason":"…"} (optional) → 200 daemon.ReloadResult once
//	                               the config and runbooks are read again and in force; 400
//	                               ReloadErrorResponse (problems with file, line, column) when
//	                               they do not validate, and the old config keeps running
//
// Request bodies are decoded strictly (unknown fields are errors, at most 64 KiB). Every error
// is {"error":"…"}: 400 bad request, 401 no/wrong/malformed token (with WWW-Authenticate:
// Bearer), 403 a read-only token on an admin route or daemon.ErrForbidden, 404 daemon.ErrNotFound
// or history.ErrNotFound, 409 daemon.ErrConflict (blackout, paused, concurrency, not leader),
// 413 body too large, 500 anything else.
//
// # Token file
//
// One token a line, three fields separated by blanks; blank lines and lines starting with # are
// ignored:
//
//	# TOKEN                                   ROLE       NAME
//	Zq3v9u6W1pXyJ0kT8bRfA2sLmN4cE7hD          admin      alice
//	sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 read-only grafana
//
// TOKEN is the bearer token itself (at least 16 characters; e.g. `openssl rand -base64 32`), or
// sha256: and the 64 hex digits of its SHA-256 digest, so that the file need not hold the secret.
// ROLE is admin (every route) or read-only (GET routes). NAME identifies the caller in the audit
// log and is passed to the daemon as "who"; names and tokens are unique. Presented tokens are
// hashed and compared with every entry in constant time.
//
// Without a token file (Config.TokenFile empty) every route but /healthz, /readyz and an open
// /metrics answers 401.
//
// The file is reread when it changes (checked on each authenticated request: mtime, size,
// inode, so a Kubernetes secret's atomic swap counts) and when the daemon calls
// Server.ReloadTokens (on SIGHUP). A file that becomes unreadable, empty or invalid is logged,
// and the tokens loaded before stay in force until it is fixed. At startup it must be valid.
//
// # Audit log
//
// Every call to an admin route — allowed, refused by the daemon, or denied for its token — is
// one JSON line (AuditEntry) appended to Config.AuditLog, fsync'd before the response is sent,
// and one slog record ("audit"). Tokens are never logged.
package api
