//! `compress --json` against docs/compress.schema.json, on every path: lossless, a fixed
//! sparsity, N:M and a byte budget. The checker covers the part of JSON Schema the file
//! uses (type, enum, properties, required, additionalProperties, items, $ref, oneOf,
//! minimum, maximum, minItems, maxItems) and refuses any other keyword, so the schema
//! cannot drift into something this test silently ignores.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn schema() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/compress.schema.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("schema type {other:?} is not known to the checker"),
    }
}

/// Every violation of `s` by `v`, as "path: what".
fn check(root: &Value, s: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let s = s.as_object().expect("a schema is an object");
    if let Some(r) = s.get("$ref") {
        let name = r.as_str().unwrap().strip_prefix("#/$defs/").unwrap();
        return check(root, &root["$defs"][name], v, path, errs);
    }
    for (k, rule) in s {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "type" => {
                let ok = match rule {
                    Value::String(t) => type_ok(t, v),
                    Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)),
                    _ => panic!("bad type rule"),
                };
                if !ok {
                    errs.push(format!("{path}: {v} is not of type {rule}"));
                    return;
                }
            }
            "enum" => {
                if !rule.as_array().unwrap().contains(v) {
                    errs.push(format!("{path}: {v} is not one of {rule}"));
                }
            }
            "oneOf" => {
                let matching = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|alt| {
                        let mut e = vec![];
                        check(root, alt, v, path, &mut e);
                        e.is_empty()
                    })
                    .count();
                if matching != 1 {
                    errs.push(format!("{path}: matches {matching} of oneOf, not 1"));
                }
            }
            "required" => {
                for r in rule.as_array().unwrap() {
                    if v.get(r.as_str().unwrap()).is_none() {
                        errs.push(format!("{path}: missing {r}"));
                    }
                }
            }
            "properties" => {
                let props = rule.as_object().unwrap();
                for (name, val) in v.as_object().into_iter().flatten() {
                    match props.get(name) {
                        Some(ps) => check(root, ps, val, &format!("{path}.{name}"), errs),
                        None => match s.get("additionalProperties") {
                            Some(Value::Bool(false)) => {
                                errs.push(format!("{path}: field {name:?} is not in the schema"))
                            }
                            Some(extra) => check(root, extra, val, &format!("{path}.{name}"), errs),
                            None => {}
                        },
                    }
                }
            }
            "additionalProperties" => {
                if !s.contains_key("properties") {
                    for (name, val) in v.as_object().into_iter().flatten() {
                        check(root, rule, val, &format!("{path}.{name}"), errs);
                    }
                }
            }
            "items" => {
                for (i, x) in v.as_array().into_iter().flatten().enumerate() {
                    check(root, rule, x, &format!("{path}[{i}]"), errs);
                }
            }
            "minimum" | "maximum" => {
                let (Some(x), Some(b)) = (v.as_f64(), rule.as_f64()) else {
                    continue;
                };
                if (k == "minimum" && x < b) || (k == "maximum" && x > b) {
                    errs.push(format!("{path}: {x} is outside {k} {b}"));
                }
            }
            "minItems" | "maxItems" => {
                let (Some(a), Some(b)) = (v.as_array(), rule.as_u64()) else {
                    continue;
                };
                let n = a.len() as u64;
                if (k == "minItems" && n < b) || (k == "maxItems" && n > b) {
                    errs.push(format!("{path}: {n} items, {k} {b}"));
                }
            }
            other => panic!("schema keyword {other:?} is not known to the checker"),
        }
    }
}

fn violations(v: &Value) -> Vec<String> {
    let root = schema();
    let mut errs = vec![];
    check(&root, &root, v, "$", &mut errs);
    errs
}

#[test]
fn every_compress_report_matches_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sparsewire"))
        .args(["demo", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input = dir.path().join("demo.safetensors");
    let runs: [&[&str]; 5] = [
        &[],
        &["--sparsity", "0.5", "--reconstruct", "auto"],
        &["--sparsity", "0.5", "--reconstruct", "mlp"],
        &["--pattern", "2:4"],
        &["--target-ratio", "0.4"],
    ];
    let mut allocation_seen = false;
    for extra in runs {
        let out = Command::new(env!("CARGO_BIN_EXE_sparsewire"))
            .arg("compress")
            .arg(&input)
            .arg("-o")
            .arg(dir.path().join("x.swire"))
            .args(["-f", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let errs = violations(&v);
        assert!(errs.is_empty(), "{extra:?}:\n{}", errs.join("\n"));
        allocation_seen |= !v["allocation"].is_null();
        // The checker can fail: a report with a field removed, one added and one mistyped.
        let mut bad = v.clone();
        bad["tensors"][0].as_object_mut().unwrap().remove("codec");
        bad["surprise"] = Value::from(1);
        bad["ratio"] = Value::from("small");
        assert_eq!(violations(&bad).len(), 3, "{:?}", violations(&bad));
    }
    assert!(
        allocation_seen,
        "the byte-budget run reports its allocation"
    );
}
