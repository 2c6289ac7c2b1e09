package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// normalizeArgs reorders a command line so that urfave/cli, which stops reading flags at the
// first argument and knows only its own level's flags, accepts what kubectl and cobra accept:
// global flags (--state-dir, --log-level, ...) after the subcommand, and a command's flags after
// its arguments (`faultline run FILE --dry-run`). Global flags move before the command; a
// command's flags move before its arguments. Everything after "--" stays where it is. A first
// word that is no command is left for Run to report.
func normalizeArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var head, moved, path, flags, positional []string
	var cmd *cli.Command
	cmds := app.Commands
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i:]...)
			break
		}
		if name, inline, ok := flagName(a); ok {
			take := func(dst *[]string, f cli.Flag) {
				*dst = append(*dst, a)
				if !inline && takesValue(f) && i+1 < len(rest) {
					i++
					*dst = append(*dst, rest[i])
				}
			}
			switch {
			case cmd == nil:
				take(&head, lookupFlag(app.Flags, name))
			case lookupFlag(cmd.Flags, name) != nil:
				take(&flags, lookupFlag(cmd.Flags, name))
			case lookupFlag(app.Flags, name) != nil:
				take(&moved, lookupFlag(app.Flags, name))
			default:
				flags = append(flags, a) // unknown: urfave/cli reports it
			}
			continue
		}
		if cmd == nil || (len(positional) == 0 && len(cmd.Subcommands) > 0) {
			next := findCommand(cmds, a)
			if next == nil {
				if cmd == nil {
					return args
				}
				positional = append(positional, a)
				continue
			}
			path = append(path, flags...)
			path = append(path, a)
			flags = nil
			cmd, cmds = next, next.Subcommands
			if cmd.SkipFlagParsing {
				// The command parses its own arguments (the demo's child processes): hand them over as they are.
				positional = append(positional, rest[i+1:]...)
				break
			}
			continue
		}
		positional = append(positional, a)
	}
	out := append([]string{args[0]}, head...)
	out = append(out, moved...)
	out = append(out, path...)
	out = append(out, flags...)
	return append(out, positional...)
}

// flagName returns the name of a flag argument ("--state-dir=x" → "state-dir", inline true).
func flagName(a string) (name string, inline, ok bool) {
	if len(a) < 2 || a[0] != '-' {
		return "", false, false
	}
	name = strings.TrimLeft(a, "-")
	if name == "" {
		return "", false, false
	}
	name, _, inline = strings.Cut(name, "=")
	return name, inline, true
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	if d, ok := f.(cli.DocGenerationFlag); ok {
		return d.TakesValue()
	}
	return false
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// unknownCommand says which word is no command, and the closest one that is.
func unknownCommand(app *cli.App, args []string) error {
	cmds := app.Commands
	var cmd *cli.Command
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		if name, inline, ok := flagName(a); ok {
			flags := app.Flags
			if cmd != nil {
				flags = cmd.Flags
			}
			if f := lookupFlag(flags, name); f != nil && !inline && takesValue(f) {
				i++
			}
			continue
		}
		// A command with an action of its own takes arguments beside its subcommands
		// (history RUN_ID, history migrate).
		if cmd != nil && (len(cmd.Subcommands) == 0 || cmd.Action != nil) {
			return nil
		}
		if a == "help" || a == "h" {
			return nil
		}
		next := findCommand(cmds, a)
		if next == nil {
			where := "faultline"
			if cmd != nil {
				where = "faultline " + cmd.Name
			}
			msg := fmt.Sprintf("unknown command %q for %q", a, where)
			if s := closest(a, cmds); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			return fmt.Errorf("%s (see '%s --help')", msg, where)
		}
		cmd, cmds = next, next.Subcommands
	}
	return nil
}

// closest is the visible command name nearest to s by edit distance, if near enough to be a typo.
func closest(s string, cmds []*cli.Command) string {
	best, bestD := "", 0
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, n := range c.Names() {
			d := editDistance(s, n)
			if strings.HasPrefix(n, s) {
				d = 1
			}
			if best == "" || d < bestD {
				best, bestD = c.Name, d
			}
		}
	}
	if bestD > max(2, len(s)/2) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
