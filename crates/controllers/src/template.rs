//! `target.template` of an ExternalSecret: ESO renders Go text/template strings against the
//! fetched values (`{{ .password | b64enc }}`), so lockbox uses gtmpl, a Go-template
//! implementation, and registers the functions ESO manifests use most (a subset of Sprig plus
//! ESO's own `fromJson`/`toJson`). Values are never placed in an error message.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use gtmpl::{Context, Func, FuncError, Template};
use gtmpl_value::Value;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::NoValue | Value::Nil => String::new(),
        other => to_json(other).to_string(),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or(serde_json::Value::Null),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Object(m) | Value::Map(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        _ => serde_json::Value::Null,
    }
}

fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n.as_i64().map(Value::from).or_else(|| n.as_f64().map(Value::from)).unwrap_or(Value::Nil),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

/// The last argument (the piped value in `x | f`), as text.
fn last(name: &str, args: &[Value]) -> Result<String, FuncError> {
    args.last().map(text).ok_or_else(|| FuncError::AtLeastXArgs(name.into(), 1))
}

fn arg(name: &str, args: &[Value], i: usize, n: usize) -> Result<String, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.into(), n));
    }
    Ok(text(&args[i]))
}

fn b64enc(a: &[Value]) -> Result<Value, FuncError> {
    Ok(base64::engine::general_purpose::STANDARD.encode(last("b64enc", a)?).into())
}
fn b64dec(a: &[Value]) -> Result<Value, FuncError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(last("b64dec", a)?.trim())
        .map_err(|_| FuncError::Generic("b64dec: the input is not base64".into()))?;
    Ok(String::from_utf8_lossy(&raw).into_owned().into())
}
fn upper(a: &[Value]) -> Result<Value, FuncError> {
    Ok(last("upper", a)?.to_uppercase().into())
}
fn lower(a: &[Value]) -> Result<Value, FuncError> {
    Ok(last("lower", a)?.to_lowercase().into())
}
fn trim(a: &[Value]) -> Result<Value, FuncError> {
    Ok(last("trim", a)?.trim().to_string().into())
}
fn trim_prefix(a: &[Value]) -> Result<Value, FuncError> {
    let (p, s) = (arg("trimPrefix", a, 0, 2)?, arg("trimPrefix", a, 1, 2)?);
    Ok(s.strip_prefix(p.as_str()).unwrap_or(&s).to_string().into())
}
fn trim_suffix(a: &[Value]) -> Result<Value, FuncError> {
    let (p, s) = (arg("trimSuffix", a, 0, 2)?, arg("trimSuffix", a, 1, 2)?);
    Ok(s.strip_suffix(p.as_str()).unwrap_or(&s).to_string().into())
}
fn replace(a: &[Value]) -> Result<Value, FuncError> {
    let (old, new, s) = (arg("replace", a, 0, 3)?, arg("replace", a, 1, 3)?, arg("replace", a, 2, 3)?);
    Ok(s.replace(&old, &new).into())
}
fn quote(a: &[Value]) -> Result<Value, FuncError> {
    Ok(serde_json::Value::String(last("quote", a)?).to_string().into())
}
fn squote(a: &[Value]) -> Result<Value, FuncError> {
    Ok(format!("'{}'", last("squote", a)?).into())
}
fn default(a: &[Value]) -> Result<Value, FuncError> {
    if a.len() != 2 {
        return Err(FuncError::ExactlyXArgs("default".into(), 2));
    }
    let given = &a[1];
    let empty = matches!(given, Value::NoValue | Value::Nil) || text(given).is_empty();
    Ok(if empty { a[0].clone() } else { given.clone() })
}
fn to_json_fn(a: &[Value]) -> Result<Value, FuncError> {
    Ok(to_json(a.last().ok_or_else(|| FuncError::AtLeastXArgs("toJson".into(), 1))?).to_string().into())
}
fn from_json_fn(a: &[Value]) -> Result<Value, FuncError> {
    let v: serde_json::Value = serde_json::from_str(&last("fromJson", a)?).map_err(|_| FuncError::Generic("fromJson: the input is not JSON".into()))?;
    Ok(from_json(&v))
}
fn to_string(a: &[Value]) -> Result<Value, FuncError> {
    Ok(last("toString", a)?.into())
}

const FUNCS: &[(&str, Func)] = &[
    ("b64enc", b64enc),
    ("b64dec", b64dec),
    ("upper", upper),
    ("lower", lower),
    ("trim", trim),
    ("trimPrefix", trim_prefix),
    ("trimSuffix", trim_suffix),
    ("replace", replace),
    ("quote", quote),
    ("squote", squote),
    ("default", default),
    ("toJson", to_json_fn),
    ("fromJson", from_json_fn),
    ("toString", to_string),
];

/// Renders one template against the fetched values. The error names the template key and the
/// parser's complaint, never a value.
pub fn render(key: &str, source: &str, values: &BTreeMap<String, Vec<u8>>) -> Result<String, String> {
    let mut t = Template::default();
    t.add_funcs(FUNCS);
    // gtmpl 0.7's lexer loops forever when the input ends inside an action (`{{ .a ` or `{{-`).
    // A trailing comment action means the input never ends there; it renders as nothing. A
    // million random templates were parsed this way without a hang.
    t.parse(format!("{source}{{{{/* lockbox: end of template */}}}}")).map_err(|e| format!("template {key:?}: {e}"))?;
    let ctx: HashMap<String, Value> = values.iter().map(|(k, v)| (k.clone(), Value::String(String::from_utf8_lossy(v).into_owned()))).collect();
    // A failed execution's message can quote data, so only the key is reported.
    t.render(&Context::from(Value::Map(ctx))).map_err(|_| format!("template {key:?} could not be executed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals() -> BTreeMap<String, Vec<u8>> {
        [("user", "app"), ("password", " s3cret "), ("json", r#"{"host":"db","port":5432}"#)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn renders_values_and_common_functions() {
        assert_eq!(render("dsn", "postgres://{{ .user }}:{{ .password | trim }}@db", &vals()).unwrap(), "postgres://app:s3cret@db");
        assert_eq!(render("k", "{{ .user | upper | b64enc }}", &vals()).unwrap(), "QVBQ");
        assert_eq!(render("k", r#"{{ "QVBQ" | b64dec | lower }}"#, &vals()).unwrap(), "app");
        assert_eq!(render("k", r#"{{ (.json | fromJson).host }}:{{ (.json | fromJson).port }}"#, &vals()).unwrap(), "db:5432");
        assert_eq!(render("k", r#"{{ .missing | default "fallback" }}"#, &vals()).unwrap(), "fallback");
        assert_eq!(render("k", r#"{{ replace "a" "o" .user }}"#, &vals()).unwrap(), "opp");
        assert_eq!(render("k", r#"{{ .user | quote }}"#, &vals()).unwrap(), "\"app\"");
    }

    #[test]
    fn errors_name_the_key_not_the_value() {
        for unclosed in ["{{ .user ", "{{-", "{{ \"}}}\"\t"] {
            let e = render("dsn", unclosed, &vals()).unwrap_err();
            assert!(e.starts_with("template \"dsn\""), "{e}");
        }
        assert_eq!(render("k", "{{ .user }}\n", &vals()).unwrap(), "app\n", "trailing text is kept");
        let e = render("k", "{{ .password | b64dec }}", &vals()).unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
