// Renders the seeds' template examples (src/compose/tests.rs, seed_*) with Go 1.19 and Sprig 3.2.3,
// html/template + HermeticHtmlFuncMap, over the reference's model structs, so the expected outputs
// in those tests are Go's. Run in GOPATH mode:
//   mkdir -p $D/src/seedgo && cp main.go $D/src/seedgo && cd $D/src/seedgo &&
//   GO111MODULE=off GOPATH=$D:/usr/share/gocode go run .
package main

import (
	"bytes"
	"fmt"
	"html/template"

	"github.com/Masterminds/sprig"
)

const langs = `{{define "en"}}
Hi,

Please enter the following code to recover your account:

{{ .RecoveryCode }}
{{end}}

{{define "fr"}}
Bonjour,

Veuillez entrer le code suivant pour récupérer votre compte:

{{ .RecoveryCode }}
{{end}}

{{define "de"}}
Hallo,

Bitte geben Sie den folgenden Code ein, um Ihr Konto wiederherzustellen:

{{ .RecoveryURL }}
{{end}}

`

const traits = `{{- if eq .Identity.traits.lang "en" -}}
{{ template "en" . }}
{{- else if eq .Identity.traits.lang "fr" -}}
{{ template "fr" . }}
{{- else if eq .Identity.traits.lang "de" -}}
{{ template "de" . }}
{{- else -}}
{{ template "en" . }}
{{- end -}}
`
const meta = `{{- if eq .Identity.metadata_public.lang "fr" -}}
{{ template "fr" . }}
{{- else if eq .Identity.metadata_public.lang "de" -}}
{{ template "de" . }}
{{- else -}}
{{ template "en" . }}
{{- end -}}
`

type RC struct {
	To               string
	RecoveryCode     string
	Identity         map[string]interface{}
	RequestURL       string
	TransientPayload map[string]interface{}
	ExpiresInMinutes int
}

func run(src string, data interface{}) {
	t, err := template.New("email.body.gotmpl").Funcs(sprig.HermeticHtmlFuncMap()).Parse(src)
	if err != nil {
		fmt.Printf("PARSE ERR %v\n", err)
		return
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		fmt.Printf("EXEC ERR %v\n", err)
		return
	}
	fmt.Printf("%q\n", b.String())
}

func main() {
	for _, l := range []string{"fr", "es", "de"} {
		run(langs+traits, RC{RecoveryCode: "730219", Identity: map[string]interface{}{"traits": map[string]interface{}{"lang": l}}})
	}
	run(langs+meta, RC{RecoveryCode: "730219", Identity: map[string]interface{}{"traits": map[string]interface{}{"lang": "de"}, "metadata_public": map[string]interface{}{"lang": "fr"}}})
	run(langs+meta, RC{RecoveryCode: "730219", Identity: map[string]interface{}{"metadata_public": nil}})
	run(langs+meta, RC{RecoveryCode: "730219", Identity: map[string]interface{}{}})
	type RV struct {
		To               string
		RecoveryURL      string
		Identity         map[string]interface{}
		RequestURL       string
		TransientPayload map[string]interface{}
	}
	run(`<h1>Recovery Details</h1>
<p>To: {{.To}}</p>
<p>Recovery URL: {{.RecoveryURL}}</p>
<p>Transient Payload: {{index .TransientPayload "example_key"}}</p>
<p>
{{- if eq (index .TransientPayload "lang") "foo" -}}
FOO
{{- else -}}
BAR
{{- end -}}
</p>
`, RV{To: "user@example.com", RecoveryURL: "https://example.com/recover", TransientPayload: map[string]interface{}{"example_key": "This is an example value"}})
	type VC struct {
		To               string
		VerificationCode string
		TransientPayload map[string]interface{}
	}
	run(`{{ $brand := index .TransientPayload "brand" }}
{{ $lang := index .TransientPayload "lang" }}

<p>Verify your {{ $brand }} account:</p>
<a href="https://accounts.example.com/{{ $lang }}/verify?code={{ .VerificationCode }}"> Verify your email </a>`, VC{VerificationCode: "112233", TransientPayload: map[string]interface{}{"brand": "Acme & Co", "lang": "fr"}})
	run(`{{ now }}`, nil)
	run(`{{ uuidv4 }}`, nil)
}
