//! Renders every fixture of `testdata/fixtures.txt` with gotmpl and our Sprig
//! functions and compares with `testdata/expected.json`, which Go 1.19's
//! text/template and html/template with Sprig 3.2.3 produced
//! (`testdata/regenerate.sh`). Where we knowingly differ from Go, the fixture
//! is listed in `DIVERGENT` with what we produce instead and why.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value as Json;

struct Fixture {
    name: String,
    modes: Vec<String>,
    data: Option<String>,
    body: String,
}

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// The same format the Go generator reads: `### name`, optional `### mode:`
/// and `### data:` lines, then the template up to the next `### ` line.
fn fixtures() -> Vec<Fixture> {
    let text = std::fs::read_to_string(testdata().join("fixtures.txt")).expect("fixtures.txt");
    let mut out: Vec<Fixture> = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("### ") {
            if let Some(m) = rest.strip_prefix("mode: ") {
                out.last_mut().expect("mode before fixture").modes =
                    m.split_whitespace().map(String::from).collect();
                continue;
            }
            if let Some(d) = rest.strip_prefix("data: ") {
                out.last_mut().expect("data before fixture").data = Some(d.to_string());
                continue;
            }
            if let Some(last) = out.last_mut() {
                last.body = body.join("\n");
            }
            body.clear();
            out.push(Fixture {
                name: rest.trim().to_string(),
                modes: vec!["txt".into()],
                data: None,
                body: String::new(),
            });
            continue;
        }
        body.push(line);
    }
    if let Some(last) = out.last_mut() {
        last.body = body.join("\n");
    }
    out
}

fn render(mode: &str, body: &str, data: &gotmpl::Value) -> Result<String, String> {
    if mode == "html" {
        let t = gotmpl::html::Template::new("t")
            .funcs(courier_sprig::hermetic_html_funcs())
            .parse(body)
            .map_err(|e| e.to_string())?;
        let trees = t
            .templates()
            .into_iter()
            .filter_map(|n| t.lookup(n).map(|l| (n, l)));
        courier_sprig::check_functions(trees, &courier_sprig::hermetic_html_funcs())
            .map_err(|e| e.to_string())?;
        t.execute_to_string(data).map_err(|e| e.to_string())
    } else {
        let t = gotmpl::Template::new("t")
            .funcs(courier_sprig::hermetic_txt_funcs())
            .parse(body)
            .map_err(|e| e.to_string())?;
        let trees = t
            .templates()
            .into_iter()
            .filter_map(|n| t.lookup(n).map(|l| (n, l)));
        courier_sprig::check_functions(trees, &courier_sprig::hermetic_txt_funcs())
            .map_err(|e| e.to_string())?;
        t.execute_to_string(data).map_err(|e| e.to_string())
    }
}

enum Expect {
    Ok(&'static str),
    /// An error whose text contains this.
    Err(&'static str),
}

/// Fixtures where we knowingly differ from Go, what we produce, and why.
const DIVERGENT: &[(&str, Expect, &str)] = &[
    (
        "core/float-print/txt",
        Expect::Ok("1000000 1000000000000000000000 0.1 1234567.5 0.00001 12345678 -0.5 3"),
        "gotmpl prints a float action with Rust's Display, not Go's %v",
    ),
    (
        "core/float-print/html",
        Expect::Ok("1000000 1000000000000000000000 0.1 1234567.5 0.00001 12345678 -0.5 3"),
        "gotmpl prints a float action with Rust's Display, not Go's %v",
    ),
    (
        "core/float-print-printf/txt",
        Expect::Ok("1000000 1234567.5 0.00001|1234567.5|1.2345675e+06"),
        "gotmpl's print and printf %v use Rust's float Display too; toString is Go's",
    ),
    (
        "core/float-print-printf/html",
        Expect::Ok("1000000 1234567.5 0.00001|1234567.5|1.2345675e&#43;06"),
        "gotmpl's print and printf %v use Rust's float Display too; toString is Go's",
    ),
    (
        "reflect/type-int64/txt",
        Expect::Ok("int|int"),
        "gotmpl has one integer type: Sprig's int64 results are plain ints",
    ),
    (
        "core/float-print-inf/txt",
        Expect::Ok("inf|-inf"),
        "gotmpl prints infinities as Rust does (Go: +Inf, -Inf)",
    ),
    (
        "reflect/type-string-slice/txt",
        Expect::Ok("[]interface {}|[]interface {}"),
        "gotmpl has one list type: Sprig's []string results are plain lists",
    ),
    (
        "core/printf-type-and-list-verbs/txt",
        Expect::Ok("%!T(int=1)|%!T(list=[banana apple cherry apple])|%!s(list=[banana apple cherry apple])|%!q(list=[banana apple cherry apple])"),
        "gotmpl's printf has no %T and does not apply %s/%q to list elements",
    ),
    (
        "core/html-unquoted-empty/html",
        Expect::Ok("<p id=ZgotmplZ>x</p>"),
        "gotmpl's escaper writes ZgotmplZ for an empty unquoted attribute value (Go: nothing)",
    ),
    (
        "core/field-on-nil/txt",
        Expect::Ok("<no value>"),
        "gotmpl yields <no value> for a field of a null value (Go: nil pointer error)",
    ),
    (
        "dicts/set-mutates/txt",
        Expect::Ok("map[a:1]|map[a:1]"),
        "gotmpl maps are immutable: set/unset return an updated copy",
    ),
    (
        "durations/int-constant/txt",
        Expect::Ok("1m30s"),
        "one integer type: an int constant reads as Sprig's int64 (Go ignores an int: 0s)",
    ),
    (
        "semver/methods/txt",
        Expect::Err("non-function"),
        "gotmpl has no methods: semver returns a map of Major/Minor/Patch/...",
    ),
    (
        "omitted/crypto/txt",
        Expect::Err("derivePassword is not available"),
        "password derivation is deliberately left out",
    ),
];

#[test]
fn go_fixtures_match() {
    let expected: BTreeMap<String, Json> = serde_json::from_str(
        &std::fs::read_to_string(testdata().join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json parses");
    let shared: Json =
        serde_json::from_str(&std::fs::read_to_string(testdata().join("data.json")).expect("data"))
            .expect("data.json parses");
    let mut failures = Vec::new();
    let mut checked = 0;
    for fx in fixtures() {
        let data_json: Json = match &fx.data {
            Some(d) => serde_json::from_str(d).expect("fixture data parses"),
            None => shared.clone(),
        };
        let data = gotmpl::to_value(&data_json).expect("data converts");
        for mode in &fx.modes {
            let key = format!("{}/{mode}", fx.name);
            let got = render(mode, &fx.body, &data);
            checked += 1;
            if let Some((_, want, _)) = DIVERGENT.iter().find(|(k, _, _)| *k == key) {
                let ok = match (want, &got) {
                    (Expect::Ok(w), Ok(g)) => w == g,
                    (Expect::Err(w), Err(g)) => g.contains(w),
                    _ => false,
                };
                if !ok {
                    failures.push(format!("{key} (known divergence): got {got:?}"));
                }
                continue;
            }
            let want = expected.get(&key).unwrap_or_else(|| {
                panic!("{key} missing from expected.json; run testdata/regenerate.sh")
            });
            match (want.get("ok").and_then(Json::as_str), &got) {
                (Some(w), Ok(g)) if w == g => {}
                (None, Err(_)) => {}
                (w, g) => failures.push(format!(
                    "{key}\n   go: {}\n  ours: {g:?}",
                    w.map_or_else(|| format!("error {}", want["err"]), |w| format!("{w:?}"))
                )),
            }
        }
    }
    assert!(checked >= 100, "only {checked} fixture renders");
    assert!(
        failures.is_empty(),
        "{} of {checked} fixture renders differ from Go:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The fixtures call most of the registered functions (each counted once).
#[test]
fn fixtures_cover_the_function_set() {
    let funcs = courier_sprig::hermetic_txt_funcs();
    let text = std::fs::read_to_string(testdata().join("fixtures.txt")).expect("fixtures.txt");
    let words: std::collections::BTreeSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let omitted = |k: &str| courier_sprig::OMITTED.iter().any(|(n, _)| *n == k);
    let covered: Vec<&String> = funcs
        .keys()
        .filter(|k| words.contains(k.as_str()) && !omitted(k))
        .collect();
    let missing: Vec<&String> = funcs
        .keys()
        .filter(|k| !words.contains(k.as_str()))
        .collect();
    assert!(
        covered.len() >= 150,
        "fixtures call {} functions; not covered: {missing:?}",
        covered.len()
    );
}

/// `expected.json` is what Go renders from the current fixtures.
#[test]
#[ignore = "needs Go 1.19 and Sprig 3.2.3 (Debian: golang-go golang-github-masterminds-sprig-dev)"]
fn expected_outputs_are_current() {
    let out = std::env::temp_dir().join(format!("sprig-expected-{}.json", std::process::id()));
    let status = std::process::Command::new(testdata().join("regenerate.sh"))
        .arg(&out)
        .status()
        .expect("run regenerate.sh");
    assert!(status.success(), "regenerate.sh failed");
    let fresh = std::fs::read_to_string(&out).expect("fresh output");
    let _ = std::fs::remove_file(&out);
    let committed =
        std::fs::read_to_string(testdata().join("expected.json")).expect("expected.json");
    assert!(
        fresh == committed,
        "testdata/expected.json is stale: run testdata/regenerate.sh"
    );
}
