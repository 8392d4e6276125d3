//! `rigger schema`: JSON Schema (draft-07, what editors' YAML extensions
//! read) generated from the key tables in `keys.rs`, so it cannot drift from
//! what the parser accepts.

use serde_json::{Map, Value, json};

use super::keys::{self, Bound, Key, Status, Ty};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFile {
    /// `.cirun.yml` and `.cirun.global.yml`.
    Cirun,
    /// `.access.yml`.
    Access,
}

/// How the parser treats a part of the file, and so how the schema must:
/// JSON Schema has no warnings, so whatever `rigger validate` only warns
/// about is accepted here, and only its errors are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Wrong types and unknown keys are errors (vast_ai runners, `.access.yml`).
    Strict,
    /// Wrong types are errors, unknown keys warnings (the top level).
    OpenKeys,
    /// Everything is a warning (runners for other clouds): keys are
    /// described for editors, never constrained.
    Describe,
}

pub fn generate(file: SchemaFile) -> Value {
    let (title, table, mode) = match file {
        SchemaFile::Cirun => (".cirun.yml (rigger)", keys::TOP, Mode::OpenKeys),
        SchemaFile::Access => (".access.yml (rigger)", keys::ACCESS_TOP, Mode::Strict),
    };
    let mut root = object(table, mode);
    root["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    root["title"] = json!(title);
    if file == SchemaFile::Cirun {
        // Any runner: its keys described, only a known `cloud` required (a
        // missing or unknown cloud is an error whatever the cloud). A vast_ai
        // runner is then held to every type and to rigger's own keys.
        let runner = &mut root["properties"]["runners"]["items"];
        *runner = object(keys::RUNNER, Mode::Describe);
        runner["required"] = json!(["cloud"]);
        runner["properties"]["cloud"] = described(
            ty(&Ty::Enum(keys::CLOUDS), Mode::Strict),
            "Where the machine runs. rigger provisions `vast_ai`.",
        );
        let mut vast = object(keys::RUNNER, Mode::Strict);
        vast["required"] = json!(["name", "cloud", "instance_type"]);
        vast["properties"]["extra_config"] = described(
            object(keys::EXTRA_VAST, Mode::Strict),
            "Vast.ai options: Cirun's keys and rigger's own.",
        );
        runner["allOf"] = json!([{
            "if": {"properties": {"cloud": ci_words(&["vast_ai"])}, "required": ["cloud"]},
            "then": vast
        }]);
    }
    root
}

fn described(mut schema: Value, doc: &str) -> Value {
    schema["description"] = json!(doc);
    schema
}

fn object(table: &[Key], mode: Mode) -> Value {
    let mut properties = Map::new();
    for k in table {
        let mut schema = described(ty(&k.ty, mode), k.doc);
        if let Status::Legacy { .. } = k.status {
            schema["deprecated"] = json!(true);
        }
        properties.insert(k.name.to_string(), schema);
    }
    if mode == Mode::Describe {
        return json!({"type": "object", "properties": properties});
    }
    let required: Vec<&str> = table
        .iter()
        .filter(|k| k.required)
        .map(|k| k.name)
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": mode == Mode::OpenKeys,
    })
}

/// The spellings of a boolean the parser accepts with a warning (YAML 1.1's
/// `yes`/`no`/`on`/`off`, which YAML 1.2 reads as text).
const YAML11_BOOLS: &[&str] = &[
    "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n",
    "N",
];

/// A number written as text (`"40"`), which the parser reads as a number.
const NUMERIC_TEXT: &str = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$";

/// Words the parser compares without case: the listed spelling, or a
/// pattern that accepts any case.
fn ci_words(words: &[&str]) -> Value {
    let alternatives: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    } else {
                        regex_escape(c)
                    }
                })
                .collect()
        })
        .collect();
    json!({"anyOf": [
        {"type": "string", "enum": words},
        {"type": "string", "pattern": format!("^({})$", alternatives.join("|"))}
    ]})
}

fn regex_escape(c: char) -> String {
    if "\\^$.|?*+()[]{}".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

fn ty(t: &Ty, mode: Mode) -> Value {
    if mode == Mode::Describe {
        return match t {
            Ty::Object(table) => object(table, mode),
            _ => json!({}),
        };
    }
    match t {
        // Any scalar but null: the parser reads `8`, `true` as text here.
        Ty::Str => json!({"type": ["string", "number", "boolean"]}),
        Ty::Bool => json!({"anyOf": [
            {"type": "boolean"},
            {"type": "string", "enum": YAML11_BOOLS}
        ]}),
        Ty::Num(b) => bounded("number", *b),
        Ty::Int(b) => bounded("integer", *b),
        Ty::Enum(words) => ci_words(words),
        Ty::OneOrMany(inner) => {
            let one = ty(inner, mode);
            json!({"anyOf": [one.clone(), {"type": "array", "items": one, "minItems": 1}]})
        }
        Ty::List(inner) => json!({"type": "array", "items": ty(inner, mode)}),
        Ty::Map(inner) => json!({"type": "object", "additionalProperties": ty(inner, mode)}),
        Ty::Object(table) => object(table, mode),
        Ty::AnyOf(options) => {
            json!({"anyOf": options.iter().map(|o| ty(o, mode)).collect::<Vec<_>>()})
        }
        Ty::Any => json!({}),
    }
}

/// A number in range, or a number written as text (range unchecked there:
/// JSON Schema cannot compare the number inside a string).
fn bounded(kind: &str, b: Bound) -> Value {
    let mut number = match b.zero {
        false => json!({"type": kind, "exclusiveMinimum": 0}),
        true => json!({"type": kind, "minimum": 0}),
    };
    if let Some(max) = b.max {
        number["maximum"] = json!(max);
    }
    json!({"anyOf": [number, {"type": "string", "pattern": NUMERIC_TEXT}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_the_schema() {
        let s = generate(SchemaFile::Cirun);
        let runner = &s["properties"]["runners"]["items"];
        for k in keys::RUNNER {
            assert!(runner["properties"].get(k.name).is_some(), "{}", k.name);
        }
        let vast = &runner["allOf"][0]["then"]["properties"]["extra_config"]["properties"];
        for k in keys::EXTRA_VAST {
            assert!(vast.get(k.name).is_some(), "{}", k.name);
        }
        assert_eq!(s["required"], json!(["runners"]));
        assert_eq!(runner["properties"]["workflow"]["deprecated"], json!(true));
    }

    #[test]
    fn access_schema_lists_policies() {
        let s = generate(SchemaFile::Access);
        assert!(s["properties"]["policies"]["items"]["properties"]["pull_request"].is_object());
    }
}
