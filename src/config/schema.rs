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

pub fn generate(file: SchemaFile) -> Value {
    let (title, table) = match file {
        SchemaFile::Cirun => (".cirun.yml (rigger)", keys::TOP),
        SchemaFile::Access => (".access.yml (rigger)", keys::ACCESS_TOP),
    };
    let mut root = object(table);
    root["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    root["title"] = json!(title);
    if file == SchemaFile::Cirun {
        // A vast_ai runner is held to rigger's own extra_config keys.
        let runner = &mut root["properties"]["runners"]["items"];
        runner["allOf"] = json!([{
            "if": {"properties": {"cloud": {"const": "vast_ai"}}, "required": ["cloud"]},
            "then": {
                "required": ["instance_type"],
                "properties": {"extra_config": object(keys::EXTRA_VAST)}
            }
        }]);
    }
    root
}

fn object(table: &[Key]) -> Value {
    let mut properties = Map::new();
    for k in table {
        let mut schema = ty(&k.ty);
        schema["description"] = json!(k.doc);
        if let Status::Legacy { .. } = k.status {
            schema["deprecated"] = json!(true);
        }
        properties.insert(k.name.to_string(), schema);
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
        "additionalProperties": false,
    })
}

fn ty(t: &Ty) -> Value {
    match t {
        Ty::Str => json!({"type": ["string", "number"]}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Num(b) => bounded("number", *b),
        Ty::Int(b) => bounded("integer", *b),
        Ty::Enum(words) => json!({"type": "string", "enum": words}),
        Ty::OneOrMany(inner) => {
            let one = ty(inner);
            json!({"anyOf": [one.clone(), {"type": "array", "items": one, "minItems": 1}]})
        }
        Ty::List(inner) => json!({"type": "array", "items": ty(inner)}),
        Ty::Map(inner) => json!({"type": "object", "additionalProperties": ty(inner)}),
        Ty::Object(table) => object(table),
        Ty::AnyOf(options) => json!({"anyOf": options.iter().map(ty).collect::<Vec<_>>()}),
        Ty::Any => json!({}),
    }
}

fn bounded(kind: &str, b: Bound) -> Value {
    match b {
        Bound::Positive => json!({"type": kind, "exclusiveMinimum": 0}),
        Bound::NonNegative => json!({"type": kind, "minimum": 0}),
        Bound::Fraction => json!({"type": kind, "minimum": 0, "maximum": 1}),
    }
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
