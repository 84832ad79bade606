package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Render writes diagnostics as the user reads them:
//
//	config.hcl:12:11: error: Unknown bus
//	   12 |   bus  = "rs458"
//	      |          ^^^^^^^
//	  No bus named "rs458" is defined. Did you mean "rs485"?
func Render(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) {
	for _, d := range diags {
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
			fmt.Fprintf(w, "  %s\n", d.Detail)
		}
		fmt.Fprintln(w)
	}
}

// writeSnippet prints the first line of r with a caret line under the range.
func writeSnippet(w io.Writer, src []byte, r hcl.Range) {
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if line != r.Start.Line {
			continue
		}
		text := strings.ReplaceAll(sc.Text(), "\t", " ")
		width := 1
		if r.End.Line == r.Start.Line && r.End.Column > r.Start.Column {
			width = r.End.Column - r.Start.Column
		}
		num := fmt.Sprintf("%5d", line)
		fmt.Fprintf(w, "%s | %s\n", num, text)
		fmt.Fprintf(w, "%s | %s%s\n", strings.Repeat(" ", len(num)), strings.Repeat(" ", max(0, r.Start.Column-1)), strings.Repeat("^", width))
		return
	}
}
