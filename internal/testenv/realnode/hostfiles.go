package realnode

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// ImageOption adds to an image LoadImage makes.
type ImageOption func(*imageSpec)

type imageSpec struct {
	tools []string
}

// WithHostTools adds host programs, looked up on PATH (e.g. "iptables", "tc", "nsenter"), at their
// host paths with the symbolic links that lead to them, the shared libraries they load and, for
// iptables, its extension modules: a pod can then run them, as a node agent that execs iptables
// does. The image's PATH has the usual directories after /.
func WithHostTools(names ...string) ImageOption {
	return func(s *imageSpec) { s.tools = append(s.tools, names...) }
}

// imageFile is a host file to copy into an image: a regular file, or a symbolic link (target set).
type imageFile struct {
	path   string
	target string
}

// hostFiles resolves tools to the files that make them work.
func hostFiles(ctx context.Context, tools []string) ([]imageFile, error) {
	files := map[string]imageFile{}
	var elfs []string
	add := func(path string) error {
		real, err := resolveInto(files, path)
		if err != nil {
			return err
		}
		if _, ok := files[real]; !ok {
			files[real] = imageFile{path: real}
			elfs = append(elfs, real)
		}
		return nil
	}
	for _, name := range tools {
		p, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("host tool %s: %w", name, err)
		}
		if err := add(p); err != nil {
			return nil, err
		}
		if resolved, err := filepath.EvalSymlinks(p); err == nil && strings.HasPrefix(filepath.Base(resolved), "xtables-") {
			mods, _ := filepath.Glob("/usr/lib/*/xtables/*.so")
			for _, m := range mods {
				if err := add(m); err != nil {
					return nil, err
				}
			}
		}
	}
	for i := 0; i < len(elfs); i++ { // grows while libraries bring their own
		libs, err := sharedLibraries(ctx, elfs[i])
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			if err := add(l); err != nil {
				return nil, err
			}
		}
	}
	out := make([]imageFile, 0, len(files))
	for _, f := range files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b imageFile) int { return strings.Compare(a.path, b.path) })
	return out, nil
}

// resolveInto walks path one element at a time, recording every symbolic link on the way (/lib ->
// usr/lib as well as /usr/sbin/iptables -> /etc/alternatives/iptables) so that the image resolves
// the path as the host does, and returns the real path of the file it leads to.
func resolveInto(files map[string]imageFile, path string) (string, error) {
	rest := strings.Split(strings.Trim(filepath.Clean(path), "/"), "/")
	cur := "/"
	for hops := 0; len(rest) > 0; {
		next := filepath.Join(cur, rest[0])
		rest = rest[1:]
		st, err := os.Lstat(next)
		if err != nil {
			return "", fmt.Errorf("host file %s: %w", path, err)
		}
		if st.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("host file %s: too many symbolic links", path)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("host file %s: %w", path, err)
		}
		files[next] = imageFile{path: next, target: target}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(strings.Trim(filepath.Clean(target), "/"), "/"), rest...)
	}
	if st, err := os.Stat(cur); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("host file %s: %s is not a regular file", path, cur)
	}
	return cur, nil
}

// sharedLibraries lists the libraries (and the loader) an ELF file loads, as ldd finds them; nothing
// for a static binary or a file that is not ELF.
func sharedLibraries(ctx context.Context, path string) ([]string, error) {
	head := make([]byte, 4)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("host file %s: %w", path, err)
	}
	_, err = f.Read(head)
	_ = f.Close()
	if err != nil || !bytes.Equal(head, []byte("\x7fELF")) {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, "ldd", path).Output()
	if err != nil {
		return nil, nil // "not a dynamic executable"
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs, nil
}

// writeHostFiles adds the files to the layer, with their parent directories.
func writeHostFiles(tw *tar.Writer, files []imageFile) error {
	dirs := map[string]bool{"etc": true, "tmp": true, "proc": true, "sys": true, "dev": true, "run": true}
	for _, f := range files {
		name := strings.TrimPrefix(f.path, "/")
		var parents []string
		for d := filepath.Dir(name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parents[i] + "/", Mode: 0o755}); err != nil {
				return err
			}
		}
		if f.target != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: f.target, Mode: 0o777}); err != nil {
				return err
			}
			continue
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			return fmt.Errorf("host file: %w", err)
		}
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("host file: %w", err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(st.Mode().Perm()), Size: int64(len(data))}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return nil
}
