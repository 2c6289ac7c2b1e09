package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

const (
	adminToken  = "admin-token-0123456789"
	readerToken = "reader-token-0123456789"
)

func TestParseTokens(t *testing.T) {
	good := sha256.Sum256([]byte("whatever"))
	for _, c := range []struct {
		text, err string
	}{
		{"# only a comment\n", ""},
		{"short admin a\n", "line 1: token shorter than 16"},
		{adminToken + " root a\n", `line 1: role "root"`},
		{adminToken + " admin\n", "line 1: want TOKEN ROLE NAME"},
		{adminToken + " admin a b\n", "line 1: want TOKEN ROLE NAME"},
		{adminToken + " admin a\n" + readerToken + " read-only a\n", `line 2: name "a" already used on line 1`},
		{adminToken + " admin a\n\n" + adminToken + " read-only b\n", "line 3: same token as line 1"},
		{"sha256:abcd admin a\n", "line 1: sha256: needs 64 hex digits"},
		{"sha256:" + hex.EncodeToString(good[:]) + " admin a\n  # indented comment\n", ""},
	} {
		set, err := ParseTokens([]byte(c.text))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.text, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.text, err, c.err)
		case err != nil && (strings.Contains(err.Error(), adminToken) || strings.Contains(err.Error(), readerToken)):
			t.Errorf("%q: error %v shows the token", c.text, err)
		}
		if c.err == "" && strings.Contains(c.text, "sha256:") {
			if who, ok := set.Lookup("whatever"); !ok || who.Name != "a" {
				t.Errorf("digest entry: lookup = %+v, %v", who, ok)
			}
			if _, ok := set.Lookup("whatever2"); ok {
				t.Error("digest entry matched another token")
			}
		}
	}
}
