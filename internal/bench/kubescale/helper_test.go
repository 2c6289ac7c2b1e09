//go:build linux

package kubescale_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
)

// helperEnv selects the part TestScaleHelperProcess plays when this test binary is started again
// as a subprocess: "idle" (nothing: the baseline), "recorder" (the workload recorder alone) or
// "select" (the pod-kill injector's Prepare alone), so that each part's peak memory is measured in
// a process of its own.
const helperEnv = "FAULTLINE_SCALE_HELPER"

var killOnePercent = runbooks.Fault{Name: "kill-1pct", PodKill: &runbooks.PodKill{
	PodTarget: runbooks.PodTarget{Namespaces: []string{namespace}, LabelSelector: "app=scale"},
	Mode:      runbooks.ModeFixedPercent, Value: 1,
}}

// TestScaleHelperProcess is not a test: it is the subprocess of BenchmarkScalePartsRSS. It reads
// the kubeconfig from $KUBECONFIG, says "ready" on stdout when its part is in place, and, for the
// recorder, finishes the recording when stdin closes and prints the record's summary.
func TestScaleHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("subprocess of BenchmarkScalePartsRSS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := injectors.Env{RunID: "bench", Kube: kubeclient.New(kubeclient.Options{}), Policy: runbooks.Policy{MaxPods: 100}}
	if mode == "select-protobuf" {
		// The same client configuration, but speaking protobuf instead of JSON.
		cfg, err := env.Kube.Config()
		if err != nil {
			t.Fatal(err)
		}
		cfg = rest.CopyConfig(cfg)
		cfg.ContentType = runtime.ContentTypeProtobuf
		cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
		if env.Kube, err = kubeclient.FromConfig(cfg, ""); err != nil {
			t.Fatal(err)
		}
		mode = "select"
	}
	switch mode {
	case "idle":
		// The baseline: this test binary doing nothing.
		fmt.Println("ready")
		printHWM(t)
	case "select":
		act, err := kubernetes.PodKill{}.Prepare(ctx, killOnePercent, env)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ready %d\n", len(act.Targets()))
		printHWM(t)
	case "recorder":
		x := &runbooks.Experiment{Name: "kill", Faults: []runbooks.Fault{killOnePercent}}
		s, err := (&recorder.Workloads{}).Start(ctx, x, env)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		res := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: time.Now()})
		doc := res.Data.(*recorder.Document)
		out, _ := json.Marshal(map[string]any{"recovered": res.Recovered, "workloads": len(doc.Workloads), "pods": len(doc.Pods)})
		fmt.Println(string(out))
		printHWM(t)
	}
}

// printHWM prints this process's peak RSS: the parent cannot read it after the exit, and its
// ru_maxrss would include the forked parent's memory from before the exec.
func printHWM(t *testing.T) {
	kib, err := vmHWM(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("VmHWM %d\n", kib)
}

// BenchmarkScalePartsRSS measures the peak RSS of each part alone, in a subprocess: the workload
// recorder watching the 10,000 pods while 100 of them are killed and replaced, and the pod-kill
// injector selecting 100 of the 10,000 (with faultline's client as it is, JSON, and with the same
// client speaking protobuf).
func BenchmarkScalePartsRSS(b *testing.B) {
	c := scaleCluster(b)
	for _, mode := range []string{"idle", "recorder", "select", "select-protobuf"} {
		b.Run(mode, func(b *testing.B) {
			var peak int64
			var summary string
			for b.Loop() {
				if err := waitAvailable(b.Context(), c, nil); err != nil {
					b.Fatal(err)
				}
				cmd := exec.CommandContext(b.Context(), os.Args[0], "-test.run=^TestScaleHelperProcess$", "-test.v")
				cmd.Env = append(os.Environ(), helperEnv+"="+mode, "KUBECONFIG="+c.Kubeconfig)
				if os.Getenv("FAULTLINE_SCALE_GCTRACE") == "1" {
					cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
				}
				stdin, err := cmd.StdinPipe()
				if err != nil {
					b.Fatal(err)
				}
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					b.Fatal(err)
				}
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				lines := bufio.NewScanner(stdout)
				var out []string
				for lines.Scan() {
					out = append(out, lines.Text())
					if strings.HasPrefix(lines.Text(), "ready") {
						break
					}
				}
				if mode == "recorder" {
					killed, err := kill(b.Context(), c, 100)
					if err != nil {
						b.Fatal(err)
					}
					if err := waitAvailable(b.Context(), c, nil); err != nil {
						b.Fatal(err)
					}
					b.Logf("killed %d pods; all replaced", killed)
				}
				stdin.Close()
				for lines.Scan() {
					out = append(out, lines.Text())
				}
				if err := cmd.Wait(); err != nil {
					b.Fatalf("%s subprocess: %v\n%s\n%s", mode, err, strings.Join(out, "\n"), stderr.String())
				}
				if os.Getenv("FAULTLINE_SCALE_GCTRACE") == "1" {
					b.Logf("%s gctrace:\n%s", mode, stderr.String())
				}
				peak = 0
				for _, l := range out {
					if v, ok := strings.CutPrefix(l, "VmHWM "); ok {
						if peak, err = strconv.ParseInt(v, 10, 64); err != nil {
							b.Fatal(err)
						}
					}
					if strings.HasPrefix(l, "{") || strings.HasPrefix(l, "ready ") {
						summary = l
					}
				}
			}
			if peak == 0 {
				b.Fatalf("%s subprocess did not report its VmHWM", mode)
			}
			b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")
			b.Logf("%s: peak RSS %.1f MB; %s", mode, float64(peak)/1024, summary)
		})
	}
}

// kill deletes n pods of the fleet directly, spread over the Deployments.
func kill(ctx context.Context, c *kube.Cluster, n int) (int, error) {
	l, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=scale", Limit: int64(n * 3)})
	if err != nil {
		return 0, err
	}
	killed := 0
	for i := 0; i < len(l.Items) && killed < n; i += 3 {
		if err := c.Client.CoreV1().Pods(namespace).Delete(ctx, l.Items[i].Name, metav1.DeleteOptions{}); err != nil {
			return killed, err
		}
		killed++
	}
	return killed, nil
}
