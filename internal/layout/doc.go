// Package layout holds no code: its test keeps the module's layout as docs/development.md
// describes it (which paths own what, and which way dependencies flow).
package layout
