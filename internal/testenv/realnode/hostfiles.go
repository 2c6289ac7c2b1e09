package realnode

import (
	"archive/tar"
	"context"
	"debug/elf"
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
	for len(elfs) > 0 { // rounds, while libraries bring their own
		batch := elfs
		elfs = nil
		libs, err := sharedLibraries(batch)
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

// sharedLibraries lists the loader and the libraries the ELF files among paths need, read from
// their ELF headers (ldd runs a process per file, which takes half a minute for iptables's
// modules on a busy machine) and found in the usual library directories.
func sharedLibraries(paths []string) ([]string, error) {
	dirs, _ := filepath.Glob("/usr/lib/*-linux-gnu*")
	more, _ := filepath.Glob("/lib/*-linux-gnu*")
	dirs = append(append(dirs, more...), "/usr/lib64", "/lib64", "/usr/lib", "/lib")
	var libs []string
	for _, p := range paths {
		f, err := elf.Open(p)
		if err != nil {
			continue // not ELF: a script or data
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(b, 0); err == nil {
					libs = append(libs, strings.TrimRight(string(b), "\x00"))
				}
			}
		}
		needed, err := f.ImportedLibraries()
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("host file %s: %w", p, err)
		}
		for _, soname := range needed {
			found := ""
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, soname)); err == nil {
					found = filepath.Join(d, soname)
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("host file %s: library %s not found in %v", p, soname, dirs)
			}
			libs = append(libs, found)
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
