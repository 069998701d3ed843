//! [`super::parse`] against serde-saphyr: whenever it answers, serde-saphyr gives the same
//! value; it answers for the shapes rendered configs have; it declines what it cannot know.

use proptest::prelude::*;
use serde_json::Value as Json;

use super::parse;

/// What serde-saphyr gives, as the checks keep it (a mapping or a list, else nothing).
fn saphyr(text: &str) -> Option<Json> {
    match crate::yaml::try_parse::<Json>(text) {
        Some(v @ (Json::Object(_) | Json::Array(_))) => Some(v),
        _ => None,
    }
}

/// `parse` answers nothing, or what serde-saphyr answers.
fn agrees(text: &str) -> Result<(), String> {
    match parse(text) {
        None => Ok(()),
        Some(v) => match saphyr(text) {
            Some(s) if s == v => Ok(()),
            other => Err(format!("{text:?}: fast {v:?}, serde-saphyr {other:?}")),
        },
    }
}

const COMPOSE: &str = r#"# Managed by deploy.
name: llm-stack

x-logging: &default-logging
  driver: json-file
  options:
    max-size: "100m"
    tag: "{{.Name}}/host01"

services:
  vllm:
    image: vllm/vllm-openai:v0.6.4.post1
    shm_size: 32g
    command: ["--config", "/etc/vllm/config.yml"]
    env_file:
      - /opt/llm-stack/.env
    environment:
      HF_HUB_OFFLINE: "1"
      VLLM_LOGGING_LEVEL: INFO
    volumes:
      - /opt/vllm/config.yml:/etc/vllm/config.yml:ro
    ports:
      - "127.0.0.1:8000:8000"
    ulimits:
      memlock: -1
      stack: 67108864
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              device_ids: ["1"]
              capabilities: [gpu]
    healthcheck:
      test: ["CMD", "python3", "-c", "import x; x.open('http://127.0.0.1:4000/health')"]
      interval: 30s
    logging: *default-logging
  redis:
    command: ["redis-server", "--save", "", "--requirepass", "${REDIS_PASSWORD}"]
    cap_add: [SYS_ADMIN]
    logging: *default-logging

volumes:
  redis-data: {}
"#;

const LITELLM: &str = r#"model_list:
  # --- local vLLM ---
  - model_name: llama-3.1-8b-instruct
    litellm_params:
      model: openai/llama-3.1-8b-instruct
      api_base: http://vllm:8000/v1
      api_key: os.environ/VLLM_API_KEY
      rpm: 1200
    model_info:
      supports_function_calling: true
      tags: ["vllm", "awq", "tools"]

litellm_settings:
  cache_params:
    supported_call_types:
    - acompletion
    - aembedding
    ttl: 600
  set_verbose: false
  callbacks: ["prometheus"]

router_settings:
  model_group_alias: {"gpt-4o": "llama-3.3-70b-instruct", "o1-mini": "deepseek-r1"}
  fallbacks:
    - deepseek-r1-distill-qwen-14b: ["qwen2.5-32b-instruct"]
  redis_password: os.environ/REDIS_PASSWORD
gpu_memory_utilization: 0.9
mode: 0755
"#;

#[test]
fn takes_rendered_configs_as_serde_saphyr_reads_them() {
    for text in [
        COMPOSE,
        LITELLM,
        "- a\n- b: 1\n  c: [x, 'y''s']\n-\n  - 2\n",
        // Anchors inside anchors, aliases to both.
        "a: &a\n  b: &b\n    c: [1, 2]\n  e: *b\nd: *a\nf: &s x\ng: *s\n",
    ] {
        let fast = parse(text).unwrap_or_else(|| panic!("declined {text}"));
        assert_eq!(Some(fast), saphyr(text), "{text}");
    }
}

/// Texts whose value this parser does not know (a naive reading would get some of them
/// wrong): each is declined, or read as serde-saphyr reads it.
#[test]
fn declines_what_it_cannot_know() {
    let declined = [
        // An escape makes the key `vllm`.
        "\"\\x76llm\": {port: 1}\n",
        // A merge key brings the anchored mapping's keys in.
        "base: &b {vllm: 1}\nother:\n  <<: *b\n",
        "<<: {model_list: []}\n",
        // A tag, an explicit key, a document marker, a directive, a block scalar.
        "a: !!str 1\n",
        "? a\n: b\n",
        "---\na: 1\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: |\n  text\n",
        // JSON (a flow mapping at the top), multi-line flow and plain scalars.
        "{\"model_list\": []}\n",
        "a: [1,\n  2]\n",
        "a: b\n  c\n",
        // Duplicate keys (an error for serde-saphyr), tabs, CR, non-ASCII.
        "a: 1\na: 2\n",
        "a: {x: 1, x: 2}\n",
        "a:\tb\n",
        "a: b\r\n",
        "a: é\n",
        // Scalars whose resolution is serde-saphyr's to say.
        "a: 0x1F\n",
        "a: 1_000\n",
        "a: .inf\n",
        "a: -.inf\n",
        "a: 1e999\n",
        "a: 99999999999999999999\n",
        "a: -9223372036854775809\n",
        // Keys that are not plain strings.
        "1: a\n",
        "yes: a\n",
        "~: a\n",
        // Anchors it does not take, and an alias to nothing.
        "a: &x 1\nb: &x 2\n",
        "a: *nothing\n",
        "- &x a\n- *x\n",
        // Wrong indentation, a mapping value on a scalar's line, a top-level scalar.
        "a:\n    b: 1\n  c: 2\n",
        "a: b: c\n",
        "just text\n",
        "",
    ];
    for text in declined {
        assert_eq!(parse(text), None, "{text:?}");
    }
}

#[test]
fn resolves_scalars_as_serde_saphyr_does() {
    let scalars = [
        "a",
        "b c",
        "yes",
        "No",
        "y",
        "N",
        "ON",
        "off",
        "true",
        "FALSE",
        "null",
        "~",
        "Null",
        "nUll",
        "0",
        "00",
        "0755",
        "-0",
        "-01",
        "1",
        "-1",
        "18446744073709551615",
        "-9223372036854775808",
        "1.5",
        "-1.5",
        ".5",
        "1.",
        "1e3",
        "1E+3",
        "-1e-3",
        "0e5",
        "0.0.0.0",
        "1.2.3",
        "1-2",
        "1+2",
        "inf",
        "-inf",
        "nan",
        "-nan",
        "Infinity",
        "e5",
        ".",
        "-.",
        "1:30",
        "127.0.0.1:8000",
        "30s",
        "32g",
        "http://h:8000/v1",
        "a#b",
        "a #b",
        "${X}",
        "a]b",
        "a}b",
        "a, b",
        "-x",
        "-1x",
        "x-",
        "$",
        "(a)",
        "/p/q",
        "_x",
        "os.environ/KEY",
        "a'b",
        "a\"b",
        "1a",
        "0b",
        "0o",
        "-0x1",
    ];
    for s in scalars {
        for text in [
            format!("k: {s}\n"),
            format!("- {s}\n"),
            format!("k: [{s}]\n"),
            format!("k: {{x: {s}}}\n"),
            format!("{s}: v\n"),
            format!("- {s}: v\n"),
        ] {
            if let Err(e) = agrees(&text) {
                panic!("{e}");
            }
        }
    }
}

/// Keys, values and line shapes to build documents from, the tricky ones among them.
const KEYS: &[&str] = &[
    "a",
    "b",
    "key",
    "k k",
    "1",
    "yes",
    "\"q\"",
    "'s'",
    "\"\"",
    "x-y",
    "a:b",
    "<<",
    "&k a",
    "*x",
    "-k",
    "~",
    "http://x",
    "a #b",
    "\"a\\tb\"",
    "'it''s'",
];
const VALUES: &[&str] = &[
    "",
    "a",
    "b c",
    "yes",
    "y",
    "null",
    "~",
    "0",
    "0755",
    "-1",
    "1.5",
    "1e3",
    ".inf",
    "0x1F",
    "1_000",
    "30s",
    "http://h:8000/v1",
    "a #c",
    "a#b",
    "${X}",
    "[a, b]",
    "[]",
    "{}",
    "{a: b}",
    "{\"k\":\"v\"}",
    "[a, [b, c]]",
    "[a,",
    "{a: 1, a: 2}",
    "\"q\"",
    "'q'",
    "'it''s'",
    "\"a\\tb\"",
    "\"\"",
    "&x",
    "&x v",
    "*x",
    "!!str 1",
    "- x",
    "a: b",
    "|",
    ">",
    "@x",
    "? x",
    ": x",
    ",x",
    "-x",
    "\"open",
    "'open",
    "[a, b] x",
    "\"q\" # c",
    "\"q\"x",
];

fn line() -> impl Strategy<Value = String> {
    let indent = prop::sample::select(vec![0usize, 0, 1, 2, 2, 4, 6]);
    let key = prop::sample::select(KEYS.to_vec());
    let value = prop::sample::select(VALUES.to_vec());
    (indent, 0..8u8, key, value).prop_map(|(indent, shape, key, value)| {
        let pad = " ".repeat(indent);
        match shape {
            0 | 1 => format!("{pad}{key}: {value}"),
            2 => format!("{pad}{key}:"),
            3 => format!("{pad}- {value}"),
            4 => format!("{pad}- {key}: {value}"),
            5 => format!("{pad}-"),
            6 => format!("{pad}# {value}"),
            _ => format!("{pad}{value}"),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]
    #[test]
    fn never_disagrees_with_serde_saphyr(lines in prop::collection::vec(line(), 1..12)) {
        let text = lines.join("\n") + "\n";
        if let Err(e) = agrees(&text) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// A well-formed document from a tree of mappings, lists and scalars, each level indented by
/// `step`, lists under a key at the key's column or deeper, with comments here and there.
#[derive(Debug, Clone)]
enum Tree {
    Scalar(&'static str),
    Map(Vec<(&'static str, Tree)>),
    Seq(Vec<Tree>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop::sample::select(VALUES.to_vec()).prop_map(Tree::Scalar);
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner.clone()), 1..5)
                .prop_map(Tree::Map),
            prop::collection::vec(inner, 1..5).prop_map(Tree::Seq),
        ]
    })
}

fn write(tree: &Tree, indent: usize, step: usize, flags: u32, out: &mut String) {
    let pad = " ".repeat(indent);
    match tree {
        Tree::Scalar(s) => out.push_str(&format!("{pad}- {s}\n")),
        Tree::Map(entries) => {
            for (i, (key, value)) in entries.iter().enumerate() {
                if flags & (1 << (i % 16)) != 0 {
                    out.push_str(&format!("{pad}# note\n"));
                }
                match value {
                    Tree::Scalar(s) => out.push_str(&format!("{pad}{key}: {s}\n")),
                    Tree::Seq(_) if flags & 0x10000 != 0 => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        write(value, indent, step, flags >> 1, out);
                    }
                    _ => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        write(value, indent + step, step, flags >> 1, out);
                    }
                }
            }
        }
        Tree::Seq(items) => {
            for item in items {
                match item {
                    Tree::Scalar(s) => out.push_str(&format!("{pad}- {s}\n")),
                    Tree::Map(_) if flags & 0x20000 != 0 => {
                        // `- key: value` with the rest of the mapping under `key`.
                        let mut inner = String::new();
                        write(item, indent + 2, step, flags >> 2, &mut inner);
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                    _ => {
                        out.push_str(&format!("{pad}-\n"));
                        write(item, indent + step, step, flags >> 2, out);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
    #[test]
    fn never_disagrees_on_well_formed_documents(
        tree in tree(),
        step in 1usize..4,
        flags in any::<u32>(),
    ) {
        let mut text = String::new();
        write(&tree, 0, step, flags, &mut text);
        if let Err(e) = agrees(&text) {
            return Err(TestCaseError::fail(e));
        }
    }
}
