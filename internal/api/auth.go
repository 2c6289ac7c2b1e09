package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Roles a token can have.
const (
	RoleAdmin    = "admin"     // every route
	RoleReadOnly = "read-only" // GET routes only
)

// minTokenLen keeps guessable tokens out of the file.
const minTokenLen = 16

// principal is who a request authenticated as.
type principal struct {
	Name string
	Role string
}

type token struct {
	digest [sha256.Size]byte
	principal
}

// tokenSet is one parsed token file.
type tokenSet []token

// ParseTokens parses a token file (the format is in the package documentation). Errors name the
// line, never the token.
func parseTokens(b []byte) (tokenSet, error) {
	var set tokenSet
	names := map[string]int{}
	digests := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want TOKEN ROLE NAME, got %d fields", n, len(f))
		}
		var t token
		switch hexDigest, ok := strings.CutPrefix(f[0], "sha256:"); {
		case ok:
			d, err := hex.DecodeString(hexDigest)
			if err != nil || len(d) != sha256.Size {
				return nil, fmt.Errorf("line %d: sha256: needs 64 hex digits", n)
			}
			copy(t.digest[:], d)
		case len(f[0]) < minTokenLen:
			return nil, fmt.Errorf("line %d: token shorter than %d characters", n, minTokenLen)
		default:
			t.digest = sha256.Sum256([]byte(f[0]))
		}
		if f[1] != RoleAdmin && f[1] != RoleReadOnly {
			return nil, fmt.Errorf("line %d: role %q: want %s or %s", n, f[1], RoleAdmin, RoleReadOnly)
		}
		t.Role, t.Name = f[1], f[2]
		if prev, dup := names[t.Name]; dup {
			return nil, fmt.Errorf("line %d: name %q already used on line %d (names identify callers in the audit log)", n, t.Name, prev)
		}
		if prev, dup := digests[t.digest]; dup {
			return nil, fmt.Errorf("line %d: same token as line %d", n, prev)
		}
		names[t.Name], digests[t.digest] = n, n
		set = append(set, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return set, nil
}

// lookup finds the token's principal. It hashes the presented token and compares the digest with
// every entry in constant time, without stopping at a match, so timing tells nothing about which
// or how many bytes matched.
func (s tokenSet) lookup(presented string) (principal, bool) {
	d := sha256.Sum256([]byte(presented))
	var found principal
	ok := 0
	for i := range s {
		eq := subtle.ConstantTimeCompare(d[:], s[i].digest[:])
		if eq == 1 {
			found = s[i].principal
		}
		ok |= eq
	}
	return found, ok == 1
}

// fileSig tells whether a file changed: a rewrite changes its mtime or size, a replacement by
// rename (as Kubernetes does for mounted secrets) its inode.
type fileSig struct {
	mod   time.Time
	size  int64
	inode uint64
}

func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}, err
	}
	sig := fileSig{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.inode = st.Ino
	}
	return sig, nil
}

// tokenSource is the token file, reloaded when it changes (checked on each authenticated request,
// a stat) or when Reload is called (on SIGHUP). A file that becomes unreadable or invalid is
// reported and the last good tokens stay in force, as a web server keeps its last good config.
type tokenSource struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	sig     fileSig
	badSig  fileSig // the last signature that failed to load: not retried until the file changes again
	set     tokenSet
	lastErr string
}

func newTokenSource(path string, log *slog.Logger) (*tokenSource, error) {
	ts := &tokenSource{path: path, log: log}
	if path == "" {
		log.Warn("no API token file: every API call but /healthz and /readyz will be refused")
		return ts, nil
	}
	if err := ts.Reload(); err != nil {
		return nil, err
	}
	return ts, nil
}

// Reload reads the file now.
func (ts *tokenSource) Reload() error {
	if ts.path == "" {
		return nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.reloadLocked()
}

func (ts *tokenSource) reloadLocked() error {
	sig, err := statSig(ts.path)
	if err != nil {
		return fmt.Errorf("token file %s: %w", ts.path, err)
	}
	b, err := os.ReadFile(ts.path)
	if err != nil {
		return fmt.Errorf("token file %s: %w", ts.path, err)
	}
	set, err := parseTokens(b)
	if err != nil {
		ts.badSig = sig
		return fmt.Errorf("token file %s: %w", ts.path, err)
	}
	if len(set) == 0 {
		ts.badSig = sig
		return fmt.Errorf("token file %s: no tokens", ts.path)
	}
	changed := ts.set != nil
	ts.sig, ts.set, ts.badSig = sig, set, fileSig{}
	if changed {
		ts.log.Info("API tokens reloaded", "file", ts.path, "tokens", len(set))
	}
	return nil
}

// current returns the tokens in force, reloading the file first if it changed.
func (ts *tokenSource) current(ctx context.Context) tokenSet {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	sig, err := statSig(ts.path)
	if err == nil && (sig == ts.sig || sig == ts.badSig) {
		return ts.set
	}
	if err == nil {
		err = ts.reloadLocked()
	} else {
		err = fmt.Errorf("token file %s: %w", ts.path, err)
	}
	switch {
	case err == nil:
		ts.lastErr = ""
	case err.Error() != ts.lastErr: // once per distinct problem, not once per request
		ts.lastErr = err.Error()
		ts.log.ErrorContext(ctx, "API tokens not reloaded; the tokens loaded before stay in force", "err", err)
	}
	return ts.set
}

// authResult is the outcome of checking a request's credentials.
type authResult struct {
	who  principal
	code int    // 0 when authenticated
	msg  string // for the error body
	hdr  string // WWW-Authenticate value for a 401
}

const realm = `Bearer realm="faultline"`

func (ts *tokenSource) authenticate(r *http.Request) authResult {
	if ts.path == "" {
		return authResult{code: http.StatusUnauthorized, msg: "this daemon has no API token file: only /healthz and /readyz answer", hdr: realm}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return authResult{code: http.StatusUnauthorized, msg: "missing bearer token", hdr: realm}
	}
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return authResult{code: http.StatusUnauthorized, msg: "malformed Authorization header: want \"Bearer TOKEN\"",
			hdr: realm + `, error="invalid_request", error_description="malformed Authorization header"`}
	}
	who, found := ts.current(r.Context()).lookup(tok)
	if !found {
		return authResult{code: http.StatusUnauthorized, msg: "invalid token", hdr: realm + `, error="invalid_token"`}
	}
	return authResult{who: who}
}
