package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Environment is what the configuration may read from outside the file:
// environment variables for env(...) and files for token_file. Load uses the
// process environment and file system; tests pass their own.
type Environment struct {
	LookupEnv func(name string) (string, bool)
	ReadFile  func(path string) ([]byte, error)
}

// OS is the process environment.
var OS = Environment{LookupEnv: os.LookupEnv, ReadFile: os.ReadFile}

// MaxFileSize is the largest configuration file Load and Parse accept. A
// real configuration of hundreds of devices is a few hundred kilobytes; a
// bigger file is almost certainly not a configuration, and parsing and
// checking it would only cost minutes and memory.
const MaxFileSize = 1 << 20

// Load parses and checks the configuration file at path. It returns every
// problem it finds. The Config is never nil; when any problem is an error it
// holds only the parsed Files, for Render. A path that does not exist, a
// directory or a file over MaxFileSize is an error that names the path.
func Load(path string) (*Config, hcl.Diagnostics) {
	if d := checkFile(path); d != nil {
		return &Config{}, hcl.Diagnostics{d}
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return &Config{}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration file",
			Detail:   err.Error(),
		}}
	}
	return Parse(path, src, OS)
}

// checkFile says what is wrong with path as a configuration file before it
// is read: missing, a directory, or too big. It returns nil when nothing is.
func checkFile(path string) *hcl.Diagnostic {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Configuration file not found",
			Detail:   fmt.Sprintf("config file %s does not exist; give the path of an HCL file with -config (see config.example.hcl).", path),
		}
	case err != nil:
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read configuration file", Detail: err.Error()}
	case st.IsDir():
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Configuration file is a directory",
			Detail:   fmt.Sprintf("config file %s is a directory; give the path of an HCL file with -config.", path),
		}
	case st.Size() > MaxFileSize:
		return tooBig(path, st.Size())
	}
	return nil
}

// tooBig is the error for a file over MaxFileSize.
func tooBig(path string, size int64) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Configuration file too large",
		Detail:   fmt.Sprintf("config file %s is %d bytes; the limit is %d bytes (1 MiB). Is it the right file?", path, size, MaxFileSize),
	}
}

// Parse is Load for a file already in memory.
func Parse(filename string, src []byte, env Environment) (*Config, hcl.Diagnostics) {
	if len(src) > MaxFileSize {
		return &Config{}, hcl.Diagnostics{tooBig(filename, int64(len(src)))}
	}
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, filename)
	files := parser.Files()
	if diags.HasErrors() {
		return &Config{Files: files}, diags
	}
	// The semantic checks run even when decoding failed somewhere, so that
	// every problem is reported at once; a value that failed to decode is
	// left at its zero value and checks do not report it a second time.
	var raw fileBlock
	diags = append(diags, gohcl.DecodeBody(file.Body, evalContext(env), &raw)...)
	c := &checker{env: env, baseDir: filepath.Dir(filename)}
	cfg := c.build(&raw, file)
	diags = tidy(append(diags, c.diags...))
	if diags.HasErrors() {
		return &Config{Files: files}, diags
	}
	cfg.Files = files
	return cfg, diags
}

// evalContext offers env("NAME") and env("NAME", "default").
func evalContext(env Environment) *hcl.EvalContext {
	envFunc := function.New(&function.Spec{
		Description: "Reads an environment variable.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			if v, ok := env.LookupEnv(name); ok {
				return cty.StringVal(v), nil
			}
			if len(args) > 1 {
				return args[1], nil
			}
			return cty.NilVal, fmt.Errorf("environment variable %s is not set; set it, or give a default: env(%q, \"...\")", name, name)
		},
	})
	return &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunc}}
}

// readSecret reads a token file: the whole file, surrounding space trimmed.
func (c *checker) readSecret(path string, rng hcl.Range) string {
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.baseDir, path)
	}
	b, err := c.env.ReadFile(path)
	if err != nil {
		c.errorf(rng, "Cannot read token file", "%v", err)
		return ""
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		c.errorf(rng, "Empty token file", "%s holds no token.", path)
	}
	return tok
}

// tidy drops diagnostics that repeat an earlier one's place (a failed env()
// call is also reported as an unknown value; a value that did not decode
// must not also be called invalid) and sorts the rest by position.
func tidy(diags hcl.Diagnostics) hcl.Diagnostics {
	type place struct {
		file string
		line int
	}
	seen := map[place]bool{}
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Subject == nil {
			out = append(out, d)
			continue
		}
		p := place{d.Subject.Filename, d.Subject.Start.Line}
		if d.Severity == hcl.DiagError && seen[p] {
			continue
		}
		if d.Severity == hcl.DiagError {
			seen[p] = true
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Subject, out[j].Subject
		if a == nil || b == nil {
			return a != nil
		}
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	return out
}
