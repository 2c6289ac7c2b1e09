package auth

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

// Principal is who a request authenticated as.
type Principal struct {
	Name string
	Role string
}

type token struct {
	digest [sha256.Size]byte
	Principal
}

// TokenSet is one parsed token file.
type TokenSet []token

// ParseTokens parses a token file (the format is in the package documentation). Errors name the
// line, never the token.
func ParseTokens(b []byte) (TokenSet, error) {
	var set TokenSet
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

// Lookup finds the token's principal. It hashes the presented token and compares the digest with
// every entry in constant time, without stopping at a match, so timing tells nothing about which
// or how many bytes matched.
func (s TokenSet) Lookup(presented string) (Principal, bool) {
	d := sha256.Sum256([]byte(presented))
	var found Principal
	ok := 0
	for i := range s {
		eq := subtle.ConstantTimeCompare(d[:], s[i].digest[:])
		if eq == 1 {
			found = s[i].Principal
		}
		ok |= eq
	}
	return found, ok == 1
}

// FileSig tells whether a credential file changed: a rewrite changes its mtime or size, a replacement by
// rename (as Kubernetes does for mounted secrets) its inode.
type FileSig struct {
	mod   time.Time
	size  int64
	inode uint64
}

// StatSig reads a file's signature.
func StatSig(path string) (FileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileSig{}, err
	}
	sig := FileSig{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.inode = st.Ino
	}
	return sig, nil
}

// Source is the token file, reloaded when it changes (checked on each authenticated request,
// a stat) or when Reload is called (on SIGHUP). A file that becomes unreadable or invalid is
// reported and the last good tokens stay in force, as a web server keeps its last good config.
type Source struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	sig     FileSig
	badSig  FileSig // the last signature that failed to load: not retried until the file changes again
	set     TokenSet
	lastErr string
}

// NewSource loads the token file at path. An empty path is allowed: every Authenticate then
// fails with 401 and a message saying no token file is configured.
func NewSource(path string, log *slog.Logger) (*Source, error) {
	ts := &Source{path: path, log: log}
	if path == "" {
		log.Warn("no API token file: every call that needs a token will be refused")
		return ts, nil
	}
	if err := ts.Reload(); err != nil {
		return nil, err
	}
	return ts, nil
}

// Reload reads the file now.
func (ts *Source) Reload() error {
	if ts.path == "" {
		return nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.reloadLocked()
}

func (ts *Source) reloadLocked() error {
	sig, err := StatSig(ts.path)
	if err != nil {
		return fmt.Errorf("token file %s: %w", ts.path, err)
	}
	b, err := os.ReadFile(ts.path)
	if err != nil {
		return fmt.Errorf("token file %s: %w", ts.path, err)
	}
	set, err := ParseTokens(b)
	if err != nil {
		ts.badSig = sig
		return fmt.Errorf("token file %s: %w", ts.path, err)
	}
	if len(set) == 0 {
		ts.badSig = sig
		return fmt.Errorf("token file %s: no tokens", ts.path)
	}
	changed := ts.set != nil
	ts.sig, ts.set, ts.badSig = sig, set, FileSig{}
	if changed {
		ts.log.Info("API tokens reloaded", "file", ts.path, "tokens", len(set))
	}
	return nil
}

// current returns the tokens in force, reloading the file first if it changed.
func (ts *Source) current(ctx context.Context) TokenSet {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	sig, err := StatSig(ts.path)
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

// Result is the outcome of checking a request's credentials.
type Result struct {
	Who  Principal
	Code int    // 0 when authenticated, else the HTTP status to answer
	Msg  string // for the error body
	Hdr  string // WWW-Authenticate value
}

// Realm is the WWW-Authenticate challenge every faultline API answers a 401 with.
const Realm = `Bearer realm="faultline"`

// Authenticate checks the request's bearer token.
func (ts *Source) Authenticate(r *http.Request) Result {
	if ts.path == "" {
		return Result{Code: http.StatusUnauthorized, Msg: "no API token file is configured: only the routes that need no token answer", Hdr: Realm}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return Result{Code: http.StatusUnauthorized, Msg: "missing bearer token", Hdr: Realm}
	}
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return Result{Code: http.StatusUnauthorized, Msg: "malformed Authorization header: want \"Bearer TOKEN\"",
			Hdr: Realm + `, error="invalid_request", error_description="malformed Authorization header"`}
	}
	who, found := ts.current(r.Context()).Lookup(tok)
	if !found {
		return Result{Code: http.StatusUnauthorized, Msg: "invalid token", Hdr: Realm + `, error="invalid_token"`}
	}
	return Result{Who: who}
}

// Forbidden is the answer for an authenticated caller whose role is not enough.
func Forbidden(who Principal, need string) Result {
	return Result{Who: who, Code: http.StatusForbidden,
		Msg: fmt.Sprintf("token %q is %s; this call needs an %s token", who.Name, who.Role, need),
		Hdr: Realm + `, error="insufficient_scope"`}
}
