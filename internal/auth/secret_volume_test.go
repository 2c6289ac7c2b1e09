package auth

import (
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// writeSecretVolume writes files the way the kubelet updates a Secret volume: a new timestamped
// directory, then the ..data symlink swapped to it atomically; the visible file is a symlink
// through ..data. (This is why the deploy mounts the Secret without subPath: a subPath mount pins
// the first file and never sees the swap.)
func writeSecretVolume(t *testing.T, dir, version, file, content string) {
	t.Helper()
	ts := filepath.Join(dir, "..rev_"+version)
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, file), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..rev_"+version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, file)
	if _, err := os.Lstat(link); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", file), link); err != nil {
			t.Fatal(err)
		}
	}
}

// Tokens rotated in a Secret volume take effect on the next request, without a restart.
func TestSourceFollowsSecretVolumeRotation(t *testing.T) {
	dir := t.TempDir()
	writeSecretVolume(t, dir, "1", "tokens", adminToken+" admin alice\n")
	src, err := NewSource(filepath.Join(dir, "tokens"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	auth := func(token string) int {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return src.Authenticate(r).Code
	}
	if code := auth(adminToken); code != 0 {
		t.Fatalf("the first token: %d", code)
	}
	writeSecretVolume(t, dir, "2", "tokens", readerToken+" admin alice\n")
	if code := auth(readerToken); code != 0 {
		t.Fatalf("the rotated token was not picked up: %d", code)
	}
	if code := auth(adminToken); code == 0 {
		t.Fatal("the old token still works after the rotation")
	}
}
