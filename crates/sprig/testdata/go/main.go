// Renders every fixture of ../fixtures.txt with Go's text/template + Sprig's
// HermeticTxtFuncMap and html/template + HermeticHtmlFuncMap, and writes the
// results (output or error) as JSON: the expected outputs `cargo test` compares.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	htemplate "html/template"
	"os"
	"strings"
	ttemplate "text/template"

	"github.com/Masterminds/sprig"
)

type fixture struct {
	Name  string
	Modes []string
	Data  string
	Body  string
}

type result struct {
	Ok  *string `json:"ok,omitempty"`
	Err *string `json:"err,omitempty"`
}

// normalize turns JSON numbers into int when they are integers, float64
// otherwise: the same split gotmpl's serde conversion makes.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case json.Number:
		s := string(t)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := t.Int64(); err == nil {
				return int(i)
			}
		}
		f, _ := t.Float64()
		return f
	case []interface{}:
		for i := range t {
			t[i] = normalize(t[i])
		}
		return t
	case map[string]interface{}:
		for k := range t {
			t[k] = normalize(t[k])
		}
		return t
	}
	return v
}

func decode(s string) interface{} {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v interface{}
	if err := d.Decode(&v); err != nil {
		panic(err)
	}
	return normalize(v)
}

func parseFixtures(path string) []fixture {
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	var out []fixture
	var cur *fixture
	var body []string
	flush := func() {
		if cur != nil {
			cur.Body = strings.Join(body, "\n")
			out = append(out, *cur)
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "### ") {
			rest := strings.TrimPrefix(line, "### ")
			switch {
			case strings.HasPrefix(rest, "mode: "):
				cur.Modes = strings.Fields(strings.TrimPrefix(rest, "mode: "))
				continue
			case strings.HasPrefix(rest, "data: "):
				cur.Data = strings.TrimPrefix(rest, "data: ")
				continue
			}
			flush()
			cur = &fixture{Name: strings.TrimSpace(rest), Modes: []string{"txt"}}
			body = nil
			continue
		}
		if cur != nil {
			body = append(body, line)
		}
	}
	flush()
	return out
}

func render(mode, body string, data interface{}) (s string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	var buf bytes.Buffer
	if mode == "html" {
		t, err := htemplate.New("t").Funcs(sprig.HermeticHtmlFuncMap()).Parse(body)
		if err != nil {
			return "", err
		}
		err = t.Execute(&buf, data)
		if err != nil {
			return "", err
		}
	} else {
		t, err := ttemplate.New("t").Funcs(sprig.HermeticTxtFuncMap()).Parse(body)
		if err != nil {
			return "", err
		}
		err = t.Execute(&buf, data)
		if err != nil {
			return "", err
		}
	}
	return buf.String(), nil
}

func main() {
	dir := os.Args[1]
	shared, err := os.ReadFile(dir + "/data.json")
	if err != nil {
		panic(err)
	}
	results := map[string]result{}
	for _, fx := range parseFixtures(dir + "/fixtures.txt") {
		src := string(shared)
		if fx.Data != "" {
			src = fx.Data
		}
		for _, mode := range fx.Modes {
			out, err := render(mode, fx.Body, decode(src))
			key := fx.Name + "/" + mode
			if _, dup := results[key]; dup {
				panic("duplicate fixture " + key)
			}
			if err != nil {
				msg := err.Error()
				results[key] = result{Err: &msg}
			} else {
				results[key] = result{Ok: &out}
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(results); err != nil {
		panic(err)
	}
	out := dir + "/expected.json"
	if len(os.Args) > 2 {
		out = os.Args[2]
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		panic(err)
	}
}
