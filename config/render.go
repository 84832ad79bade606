package config

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// MaxDiagnostics is how many diagnostics Render prints; the rest are only
// counted. A file with thousands of problems is usually the wrong file, and
// the first problems are the ones to fix first.
const MaxDiagnostics = 50

// maxSnippetWidth is how much of a source line a snippet shows at most: a
// long line is cut around the problem.
const maxSnippetWidth = 120

// Render writes diagnostics as the user reads them, at most MaxDiagnostics
// of them followed by a count of the rest:
//
//	config.hcl:12:11: error: Unknown bus
//	   12 |   bus  = "rs458"
//	      |          ^^^^^^^
//	  No bus named "rs458" is defined. Did you mean "rs485"?
func Render(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) {
	shown := diags[:min(len(diags), MaxDiagnostics)]
	for _, d := range shown {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		if d.Subject == nil {
			fmt.Fprintf(w, "%s: %s\n", sev, d.Summary)
		} else {
			r := d.Subject
			fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", r.Filename, r.Start.Line, r.Start.Column, sev, d.Summary)
			if f := files[r.Filename]; f != nil {
				writeSnippet(w, f.Bytes, *r)
			}
		}
		if d.Detail != "" {
			fmt.Fprintf(w, "  %s\n", printable(d.Detail, 4*maxSnippetWidth))
		}
		fmt.Fprintln(w)
	}
	if rest := diags[len(shown):]; len(rest) > 0 {
		errs := 0
		for _, d := range rest {
			if d.Severity == hcl.DiagError {
				errs++
			}
		}
		fmt.Fprintf(w, "... and %d more (%d errors, %d warnings) not shown; fix the ones above first\n\n", len(rest), errs, len(rest)-errs)
	}
}

// writeSnippet prints the line where r starts with a caret line under the
// range. It finds the line from r's byte offset, so each snippet costs the
// length of its line, not of the file; a line longer than maxSnippetWidth is
// cut around the range.
func writeSnippet(w io.Writer, src []byte, r hcl.Range) {
	at := r.Start.Byte
	if at < 0 || at > len(src) {
		return
	}
	start := bytes.LastIndexByte(src[:at], '\n') + 1
	end := len(src)
	if i := bytes.IndexByte(src[at:], '\n'); i >= 0 {
		end = at + i
	}
	line := src[start:end]
	col := at - start // byte offset of the range in line

	// Cut a long line to a window that starts a little before the range.
	prefix := ""
	if len(line) > maxSnippetWidth {
		from := max(0, col-maxSnippetWidth/4)
		for from > 0 && !utf8.RuneStart(line[from]) {
			from--
		}
		to := min(len(line), from+maxSnippetWidth)
		if from > 0 {
			prefix = "..."
		}
		line, col = line[from:to], col-from
	}
	width := 1
	if r.End.Line == r.Start.Line && r.End.Byte > r.Start.Byte {
		width = utf8.RuneCount(line[min(col, len(line)):min(col+r.End.Byte-r.Start.Byte, len(line))])
	}
	caretAt := len(prefix) + utf8.RuneCount(line[:min(col, len(line))])
	num := fmt.Sprintf("%5d", r.Start.Line)
	fmt.Fprintf(w, "%s | %s%s\n", num, prefix, printable(string(line), maxSnippetWidth))
	fmt.Fprintf(w, "%s | %s%s\n", strings.Repeat(" ", len(num)), strings.Repeat(" ", caretAt), strings.Repeat("^", max(1, width)))
}

// printable returns s with tabs as spaces, other control characters and
// invalid UTF-8 as '?', cut to at most n runes: a snippet of a binary file
// must not garble the terminal.
func printable(s string, n int) string {
	var b strings.Builder
	count := 0
	for _, c := range s {
		if count == n {
			b.WriteString("...")
			break
		}
		switch {
		case c == '\t':
			c = ' '
		case c == utf8.RuneError || (unicode.IsControl(c) && c != '\n'):
			c = '?'
		}
		b.WriteRune(c)
		count++
	}
	return b.String()
}
