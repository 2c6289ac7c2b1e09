package realnode

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Images are built from static Go binaries and imported into containerd: no registry is involved.
// Pods that use them must say imagePullPolicy: Never.
const (
	// PauseImage is the sandbox image containerd starts first in every pod (see ./pause).
	PauseImage = "faultline.test/pause:v1"
	// HTTPDImage is the image of ./httpd, loaded by Node.HTTPDImage.
	HTTPDImage = "faultline.test/httpd:v1"

	pausePackage = "github.com/faultline-dev/faultline/internal/testenv/realnode/pause"
	httpdPackage = "github.com/faultline-dev/faultline/internal/testenv/realnode/httpd"
)

// LoadImage makes an image named ref whose only file, besides /etc/passwd and /etc/group, is a
// static Go binary at /<base name>, its entrypoint, and imports it into the node's containerd.
// src is a Go package path (built with CGO_ENABLED=0) or the path of an existing static binary.
// It returns the binary's path on the host, so a test can also run it there or, with InNetNS, in a
// pod's network namespace.
func (n *Node) LoadImage(ctx context.Context, ref, src string, opts ...ImageOption) (string, error) {
	var spec imageSpec
	for _, o := range opts {
		o(&spec)
	}
	bin, err := n.binary(ctx, src)
	if err != nil {
		return "", fmt.Errorf("load image %s: %w", ref, err)
	}
	files, err := hostFiles(ctx, spec.tools)
	if err != nil {
		return "", fmt.Errorf("load image %s: %w", ref, err)
	}
	tarPath := filepath.Join(n.Dir, "images", strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	if err := writeImage(tarPath, ref, bin, files); err != nil {
		return "", fmt.Errorf("load image %s: %w", ref, err)
	}
	if _, err := run(ctx, "ctr", "--address", n.CRISocket, "--namespace", n.Namespace, "images", "import", tarPath); err != nil {
		return "", fmt.Errorf("load image %s: %w", ref, err)
	}
	return bin, nil
}

// binary returns src when it is a file, or else builds the Go package src into the node's directory.
func (n *Node) binary(ctx context.Context, src string) (string, error) {
	if st, err := os.Stat(src); err == nil && !st.IsDir() {
		return src, nil
	}
	out := filepath.Join(n.Dir, "bin", filepath.Base(src))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", src, err)
	}
	// go test puts its own toolchain first on the PATH of the processes a test starts.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", src, err, bytes.TrimSpace(b))
	}
	return out, nil
}

// writeImage writes a one-layer image holding bin as a docker-archive tarball, which
// `ctr images import` reads.
func writeImage(path, ref, bin string, extra []imageFile) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("image name: %w", err)
	}
	entry := "/" + filepath.Base(bin)
	layer, err := binaryLayer(bin, entry, extra)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("image layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{entry}
	cf.Config.Env = []string{"PATH=/:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("image tarball: %w", err)
	}
	if err := tarball.MultiRefWriteToFile(path, map[name.Reference]v1.Image{r: img}); err != nil {
		return fmt.Errorf("write image tarball %s: %w", path, err)
	}
	return nil
}

// binaryLayer is a layer with the directories a runtime expects, user and group files, and bin.
func binaryLayer(bin, entry string, extra []imageFile) (v1.Layer, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"tmp/", 0o1777}, {"proc/", 0o755}, {"sys/", 0o755}, {"dev/", 0o755}, {"run/", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode}); err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\n")},
		{strings.TrimPrefix(entry, "/"), 0o755, data},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
	}
	if err := writeHostFiles(tw, extra); err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	return layer, nil
}
