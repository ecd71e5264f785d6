//! Helpers shared by the end-to-end tests and benchmarks: a cluster in a temp dir, a
//! small JSON-schema checker for the Heroku Platform API schema, and the benchmarks
//! ([`bench`]).

pub mod bench;
pub mod load;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use haven_testcluster::{Mode, Options, TestCluster};
use serde_json::Value;

/// A running cluster and the temp dir that holds it (removed after the cluster stops).
pub struct Env {
    pub tc: TestCluster,
    // Dropped after `tc` (fields drop in order): the nodes stop before their dir goes.
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = TestCluster;
    fn deref(&self) -> &TestCluster {
        &self.tc
    }
}

impl std::ops::DerefMut for Env {
    fn deref_mut(&mut self) -> &mut TestCluster {
        &mut self.tc
    }
}

/// Starts an `n`-node cluster in a fresh temp dir.
pub fn cluster(n: usize) -> Env {
    cluster_with(n, None)
}

/// Starts an `n`-node cluster whose nodes get `config_toml` as their `--config` file.
pub fn cluster_with(n: usize, config_toml: Option<&str>) -> Env {
    cluster_opts(n, |o| o.config_toml = config_toml.map(str::to_string))
}

/// Starts an `n`-node cluster with options set by `f` (config file, node environment).
pub fn cluster_opts(n: usize, f: impl FnOnce(&mut Options)) -> Env {
    let dir = tempfile::Builder::new()
        .prefix("haven-e2e-")
        .tempdir()
        .expect("temp dir");
    let mut opts = Options::new(n, dir.path());
    // HAVEN_E2E_MODE=loopback runs the suite as a non-root user would (no partitions).
    opts.mode = match std::env::var("HAVEN_E2E_MODE").as_deref() {
        Ok("loopback") => Mode::Loopback,
        Ok("netns") => Mode::Netns,
        _ => Mode::Auto,
    };
    f(&mut opts);
    let tc = TestCluster::start(opts).unwrap_or_else(|e| panic!("start a {n}-node cluster: {e:#}"));
    Env { tc, _dir: dir }
}

/// Polls `f` until it returns `Some`, or panics naming `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A binary of the workspace, next to the test executable's target dir.
pub fn binary(name: &str) -> PathBuf {
    haven_testcluster::find_binary(name, None, &format!("{}_BIN", name.to_uppercase()))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A path of the repository (`examples/python-hello`, `tests/fixtures/router-app`).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// `hctl ARGS` against node `node` with the admin token (and a home of its own, so that
/// no saved login of the machine is read).
pub fn hctl_command(env: &Env, node: usize, args: &[&str]) -> Command {
    let home = std::env::temp_dir().join("haven-tests-hctl-home");
    let _ = std::fs::create_dir_all(&home);
    let mut c = Command::new(binary("hctl"));
    c.args(args)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("HAVEN_API", env.api(node))
        .env("HAVEN_TOKEN", env.token());
    if env.api(node).starts_with("https://") {
        if let Some(dir) = env.data_dir(0) {
            c.env("HAVEN_CA_FILE", dir.join("ca.pem"));
        }
    }
    c
}

/// Runs `hctl ARGS` against node `node` and waits for it.
pub fn hctl(env: &Env, node: usize, args: &[&str]) -> Output {
    hctl_command(env, node, args)
        .output()
        .unwrap_or_else(|e| panic!("run hctl: {e}"))
}

/// The stdout of an `hctl` run that succeeded; panics with its output otherwise.
pub fn hctl_ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "hctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deploys a one-file app (a Procfile whose only type, `worker`, starts at quantity 0)
/// to the existing app `app` through node 0 with `hctl deploy`, so that the app's
/// releases from then on have a slug (rollbacks need one); no dyno starts.
pub fn deploy_procfile_only(env: &Env, app: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("Procfile"), "worker: sleep 3600\n").expect("write Procfile");
    let src = dir.path().to_string_lossy().into_owned();
    hctl_ok(hctl(env, 0, &["deploy", &src, "-a", app]));
}

/// The official Heroku Platform API schema, kept as a fixture
/// (`tests/fixtures/heroku-platform-api-schema.json`).
pub fn heroku_schema() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/heroku-platform-api-schema.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("parse schema")
}

/// Checks `value` against `schema` (a subset of JSON Schema draft 4: `$ref`, `type`,
/// `properties`, `patternProperties`, `additionalProperties`, `items`, `enum`, `pattern`,
/// `format: uuid|date-time`, `anyOf`), resolving
/// references in `root`. Returns every violation with its JSON path.
pub fn validate(root: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(root, schema, value, "$", &mut errors, 0);
    errors
}

/// Fields whose `pattern` names Heroku's own hosts (`git.heroku.com`, `herokuapp.com`):
/// Haven answers with the cluster's addresses there, by design.
pub const HOST_SPECIFIC: &[&str] = &["$.git_url", "$.web_url"];

/// [`validate`], minus pattern mismatches on [`HOST_SPECIFIC`] fields.
pub fn validate_haven(root: &Value, schema: &Value, value: &Value) -> Vec<String> {
    validate(root, schema, value)
        .into_iter()
        .filter(|e| {
            !HOST_SPECIFIC
                .iter()
                .any(|p| e.starts_with(&format!("{p}:")) && e.contains("does not match"))
        })
        .collect()
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn check(
    root: &Value,
    schema: &Value,
    v: &Value,
    path: &str,
    errors: &mut Vec<String>,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        match resolve(root, r) {
            Some(target) => check(root, target, v, path, errors, depth + 1),
            None => errors.push(format!("{path}: unresolvable $ref {r}")),
        }
        return;
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let ok = any.iter().any(|s| validate_at(root, s, v, depth));
        if !ok {
            errors.push(format!("{path}: matches none of anyOf"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.is_empty() && !types.iter().any(|t| type_matches(t, v)) {
            errors.push(format!("{path}: {v} is not of type {types:?}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errors.push(format!("{path}: {v} is not one of {e:?}"));
        }
    }
    if let (Some(s), Some(fmt)) = (v.as_str(), schema.get("format").and_then(Value::as_str)) {
        let ok = match fmt {
            "uuid" => s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{path}: {s:?} is not a {fmt}"));
        }
    }
    if let (Some(s), Some(p)) = (v.as_str(), schema.get("pattern").and_then(Value::as_str)) {
        match regex::Regex::new(p) {
            Ok(re) if !re.is_match(s) => errors.push(format!("{path}: {s:?} does not match {p}")),
            _ => {}
        }
    }
    if let (Some(obj), Some(props)) = (
        v.as_object(),
        schema.get("properties").and_then(Value::as_object),
    ) {
        for (k, sub) in props {
            if let Some(field) = obj.get(k) {
                check(root, sub, field, &format!("{path}.{k}"), errors, depth + 1);
            }
        }
    }
    if let Some(obj) = v.as_object() {
        check_object_keys(root, schema, obj, path, errors, depth);
    }
    if let (Some(items), Some(sub)) = (v.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(root, sub, item, &format!("{path}[{i}]"), errors, depth + 1);
        }
    }
}

/// `patternProperties` and `additionalProperties` (draft 4): a key named in `properties`
/// is checked there; one matching a pattern against that pattern's schema; any other key
/// against `additionalProperties` (`false` refuses it).
fn check_object_keys(
    root: &Value,
    schema: &Value,
    obj: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Vec<String>,
    depth: usize,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    let patterns: Vec<(regex::Regex, &Value)> = schema
        .get("patternProperties")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(p, s)| regex::Regex::new(p).ok().map(|re| (re, s)))
                .collect()
        })
        .unwrap_or_default();
    let additional = schema.get("additionalProperties");
    if patterns.is_empty() && additional.is_none() {
        return;
    }
    for (k, field) in obj {
        let field_path = format!("{path}.{k}");
        let mut matched = props.is_some_and(|p| p.contains_key(k));
        for (re, sub) in &patterns {
            if re.is_match(k) {
                matched = true;
                check(root, sub, field, &field_path, errors, depth + 1);
            }
        }
        if matched {
            continue;
        }
        match additional {
            Some(Value::Bool(false)) => {
                errors.push(format!("{field_path}: property {k:?} is not allowed"))
            }
            Some(sub @ Value::Object(_)) => check(root, sub, field, &field_path, errors, depth + 1),
            _ => {}
        }
    }
}

fn validate_at(root: &Value, schema: &Value, v: &Value, depth: usize) -> bool {
    let mut errors = Vec::new();
    check(root, schema, v, "$", &mut errors, depth + 1);
    errors.is_empty()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validator_catches_type_format_and_pattern_errors() {
        let root = json!({
            "definitions": {
                "thing": {
                    "properties": {
                        "id": {"type": ["string"], "format": "uuid"},
                        "name": {"type": ["string"], "pattern": "^[a-z]+$"},
                        "count": {"type": ["integer", "null"]},
                        "tags": {"type": ["array"], "items": {"type": ["string"]}},
                        "ref": {"$ref": "#/definitions/other"}
                    }
                },
                "other": {"type": ["boolean"]}
            }
        });
        let schema = root["definitions"]["thing"].clone();
        let good = json!({"id": "01234567-89ab-cdef-0123-456789abcdef", "name": "abc", "count": null, "tags": ["x"], "ref": true});
        assert_eq!(validate(&root, &schema, &good), Vec::<String>::new());
        let bad = json!({"id": "nope", "name": "ABC", "count": "3", "tags": [1], "ref": "yes"});
        let errors = validate(&root, &schema, &bad);
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn validator_checks_enums_any_of_and_keys() {
        let root = json!({
            "definitions": {
                "state": {"type": ["string"], "enum": ["up", "down"]},
                "id": {"anyOf": [{"type": ["string"], "format": "uuid"}, {"type": ["integer"]}]},
                "vars": {
                    "type": ["object"],
                    "additionalProperties": false,
                    "patternProperties": {"^\\w+$": {"type": ["string", "null"]}}
                },
                "thing": {
                    "type": ["object"],
                    "properties": {
                        "state": {"$ref": "#/definitions/state"},
                        "id": {"$ref": "#/definitions/id"},
                        "vars": {"$ref": "#/definitions/vars"},
                        "when": {"type": ["string", "null"], "format": "date-time"}
                    }
                }
            }
        });
        let schema = root["definitions"]["thing"].clone();
        let good = json!({
            "state": "up",
            "id": 7,
            "vars": {"FOO": "bar", "GONE": null},
            "when": "2026-11-22T10:00:00Z",
            "extra": "allowed: no additionalProperties here"
        });
        assert_eq!(validate(&root, &schema, &good), Vec::<String>::new());
        assert_eq!(
            validate(
                &root,
                &schema,
                &json!({"when": null, "id": "01234567-89ab-cdef-0123-456789abcdef"})
            ),
            Vec::<String>::new()
        );
        let bad = json!({
            "state": "crashed",
            "id": "nope",
            "vars": {"FOO": 1, "not a key": "x"},
            "when": "yesterday"
        });
        let errors = validate(&root, &schema, &bad);
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors.iter().any(|e| e.starts_with("$.state:")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("$.id:")), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("$.vars.FOO:")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("\"not a key\" is not allowed")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("$.when:")),
            "{errors:?}"
        );
        // The top-level type is checked too.
        assert_eq!(validate(&root, &schema, &json!([1])).len(), 1);
    }

    #[test]
    fn heroku_schema_resolves() {
        let root = heroku_schema();
        let app = root["definitions"]["app"].clone();
        assert!(app["properties"]["name"]["$ref"].is_string());
        assert!(validate(&root, &app, &json!({"name": "UPPER"})).len() == 1);
    }
}
