package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bare runs the built binary with exactly these arguments (no --state-dir put first).
func bare(t *testing.T, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var so, se lockedBuffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("run faultline %v: %v", args, err)
	}
	return outcome{code: cmd.ProcessState.ExitCode(), stdout: so.String(), stderr: se.String()}
}

func TestGlobalFlagsAfterTheSubcommand(t *testing.T) {
	state := filepath.Join(t.TempDir(), "missing")
	// --state-dir after the command reaches the command: recover names that directory.
	out := bare(t, "recover", "--state-dir", state)
	if out.code != 4 || !strings.Contains(out.stderr, "no ledger at "+filepath.Join(state, "ledger.db")) {
		t.Fatalf("recover --state-dir: exit %d, stderr %q", out.code, out.stderr)
	}
	out = bare(t, "validate", "../../runbooks/examples/process-pause.yaml", "--log-level=error", "--state-dir", state)
	if out.code != 0 || !strings.Contains(out.stdout, "valid") {
		t.Fatalf("validate FILE --log-level --state-dir: exit %d\nstdout %q\nstderr %q", out.code, out.stdout, out.stderr)
	}
	// A bad global flag value after the command is read, not ignored.
	if out := bare(t, "recover", "--log-level", "loud", "--state-dir", state); out.code != 4 || !strings.Contains(out.stderr, "--log-level") {
		t.Fatalf("recover --log-level loud: exit %d, stderr %q; want the bad level reported", out.code, out.stderr)
	}
}

func TestFlagsAfterTheRunbookFile(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "5s"})
	state := filepath.Join(t.TempDir(), "state")
	out := bare(t, "run", rb, "--dry-run", "-o", "json", "--state-dir", state)
	if out.code != 0 {
		t.Fatalf("run FILE --dry-run: exit %d\nstderr:\n%s", out.code, out.stderr)
	}
	if r := out.result(t); r.Verdict != "dry-run" {
		t.Fatalf("verdict %s, want dry-run", r.Verdict)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("a dry run created %s", state)
	}
	if v.State() == "T" {
		t.Fatal("a dry run stopped the victim")
	}
}

func TestUnknownCommandSuggestsTheClosest(t *testing.T) {
	for args, want := range map[string]string{
		"valdate x.yaml":          `unknown command "valdate" for "faultline"; did you mean "validate"?`,
		"--log-level info recovr": `unknown command "recovr" for "faultline"; did you mean "recover"?`,
		"proxy lst":               `unknown command "lst" for "faultline proxy"; did you mean "list"?`,
		"zzzzzzzz":                `unknown command "zzzzzzzz" for "faultline" (see 'faultline --help')`,
	} {
		out := bare(t, strings.Fields(args)...)
		if out.code != 4 || !strings.Contains(out.stderr, want) {
			t.Errorf("faultline %s: exit %d, stderr %q; want 4 and %q", args, out.code, out.stderr, want)
		}
	}
}

func TestLeafCommandsListNoHelpCommand(t *testing.T) {
	for _, cmd := range []string{"run", "validate", "recover", "halt", "status", "completion"} {
		out := bare(t, cmd, "--help")
		if out.code != 0 || strings.Contains(out.stdout, "COMMANDS:") || strings.Contains(out.stdout, "help, h") {
			t.Errorf("faultline %s --help (exit %d) lists a help command:\n%s", cmd, out.code, out.stdout)
		}
	}
	if out := bare(t, "proxy", "--help"); !strings.Contains(out.stdout, "COMMANDS:") {
		t.Errorf("faultline proxy --help lists no subcommands:\n%s", out.stdout)
	}
}

func TestTokensFileIsAHiddenAliasOfTokenFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-tokens")
	for _, flag := range []string{"--token-file", "--tokens-file"} {
		out := bare(t, "proxy", "serve", "--proxy", "a=127.0.0.1:0=127.0.0.1:9", "--api-address", "127.0.0.1:0", flag, missing)
		if out.code != 4 || !strings.Contains(out.stderr, "--token-file") || !strings.Contains(out.stderr, "no-tokens") {
			t.Errorf("proxy serve %s MISSING: exit %d, stderr %q; want the token file's error", flag, out.code, out.stderr)
		}
	}
	if out := bare(t, "proxy", "serve", "--help"); strings.Contains(out.stdout, "tokens-file") || !strings.Contains(out.stdout, "--token-file") {
		t.Errorf("proxy serve --help shows the old spelling or not the new one:\n%s", out.stdout)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out := bare(t, "completion", sh)
		if out.code != 0 || !strings.Contains(out.stdout, "recover") || !strings.Contains(out.stdout, "dry-run") {
			t.Fatalf("completion %s: exit %d\n%s", sh, out.code, out.stdout)
		}
		if sh == "fish" {
			continue
		}
		if _, err := exec.LookPath(sh); err != nil {
			if sh == "zsh" {
				continue // the bash script is what zsh loads through bashcompinit
			}
			t.Fatalf("%s not installed", sh)
		}
		// The script loads, and completing "faultline proxy s" offers "serve".
		script := out.stdout + "\nCOMP_WORDS=(faultline proxy s); COMP_CWORD=2; _faultline; echo \"${COMPREPLY[*]}\"\n"
		if sh == "zsh" {
			script = "autoload -U compinit && compinit -u\n" + script
		}
		got, err := exec.Command(sh, "-c", script).CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != "serve" {
			t.Errorf("%s completion of 'faultline proxy s': %q (err %v), want serve", sh, got, err)
		}
	}
	if out := bare(t, "completion", "tcsh"); out.code != 4 || !strings.Contains(out.stderr, "bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d, stderr %q", out.code, out.stderr)
	}
}
