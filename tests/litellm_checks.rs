//! The LiteLLM checks against real LiteLLM: each input `deploy check` refuses is given to the
//! LiteLLM proxy (1.80.0, installed by `.ci/run`), routing to stand-in vLLMs on 127.0.0.2
//! (wintermute) and 127.0.0.3 (armitage), and a request through it is shown to fail the way
//! the report says; the inputs the check passes are answered. The vLLM hosts' configs are
//! rendered by the repo's real `vllm.config.yml.j2`, their `ansible_host` being the stand-in's
//! address and `vllm.port` its port. LiteLLM gets the config text the template holds (a
//! literal) and the environment its Compose service would get. One LiteLLM start per config:
//! it takes seconds.

use crate::support::litellm::{self, Litellm, Started};
use crate::support::project::Project;
use crate::support::vllm::{Serve, StandIn, closed_port};

const WINTERMUTE: &str = "llama31-8b-wintermute";
const ARMITAGE: &str = "qwen2.5-7b-armitage";

struct Fleet {
    p: Project,
    wintermute: StandIn,
    armitage: StandIn,
    /// Ports shown by name in snapshots.
    ports: Vec<(u16, &'static str)>,
}

/// motoko (LiteLLM) and the two vLLM hosts as local stand-in hosts; `motoko_files` are
/// (template name, dest) of motoko's files beside its LiteLLM config.
fn fleet(wintermute: Serve, armitage: Serve, motoko_files: &[(&str, &str)]) -> Fleet {
    let w = StandIn::start("127.0.0.2", wintermute.clone());
    let a = StandIn::start("127.0.0.3", armitage.clone());
    let p = Project::new();
    let vars = |s: &StandIn, serve: &Serve| {
        format!(
            "ansible_host: {}\nvllm:\n  model: hf/model-of-{}\n  served_model_name: {}\n  port: {}\n  max_model_len: 9000\n  gpu_memory_utilization: 0.85\n",
            s.ip, serve.name, serve.name, s.port
        )
    };
    let mut litellm_files = String::from(
        "      - template: litellm.config.yaml\n        dest: /opt/litellm/litellm.config.yaml\n",
    );
    for (template, dest) in motoko_files {
        litellm_files.push_str(&format!(
            "      - template: {template}\n        dest: {dest}\n"
        ));
    }
    p.local_hosts(&[
        ("litellm", &["motoko"]),
        ("vllm", &["wintermute", "armitage"]),
    ])
    .file("hosts/host_vars/wintermute.yml", &vars(&w, &wintermute))
    .file("hosts/host_vars/armitage.yml", &vars(&a, &armitage))
    .manifest(&format!(
        "groups:\n  litellm:\n    files:\n{litellm_files}  vllm:\n    files:\n      - template: vllm.config.yml.j2\n        dest: /vllm/config.yml\n"
    ))
    .template(
        "vllm.config.yml.j2",
        include_str!("../templates/vllm.config.yml.j2"),
    );
    let ports = vec![(w.port, "[WINTERMUTE_PORT]"), (a.port, "[ARMITAGE_PORT]")];
    Fleet {
        p,
        wintermute: w,
        armitage: a,
        ports,
    }
}

impl Fleet {
    /// Writes motoko's LiteLLM config (a literal template) and returns its text.
    fn litellm_config(&self, text: &str) -> String {
        self.p.template("litellm.config.yaml", text);
        text.to_string()
    }

    fn filter(&self, text: &str) -> String {
        let mut text = self.p.filter(text);
        for (port, name) in &self.ports {
            text = text.replace(&port.to_string(), name);
        }
        text
    }

    /// LiteLLM on `config` with `env`, serving.
    fn litellm(&self, config: &str, env: &[(&str, &str)]) -> Litellm {
        let dir = self.p.path().join("litellm");
        std::fs::create_dir_all(&dir).expect("litellm dir");
        let l = litellm::running(&dir, config, env);
        eprintln!("LiteLLM served after {:?}", l.startup);
        l
    }
}

#[track_caller]
fn assert_answered_by(answer: &litellm::Answer, served: &str) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.content(),
        format!("answered by {served}"),
        "{answer:?}"
    );
}

#[track_caller]
fn assert_fails(answer: &litellm::Answer, status: u16, message: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(answer.error().contains(message), "{answer:?}");
}

#[test]
fn route_disagreements_with_the_vllm_config_fail_in_real_litellm() {
    let mut f = fleet(
        Serve {
            name: WINTERMUTE.into(),
            ..Serve::default()
        },
        Serve {
            name: ARMITAGE.into(),
            ..Serve::default()
        },
        &[],
    );
    let closed = closed_port("127.0.0.2");
    let elsewhere = closed_port("127.0.0.9");
    f.ports.push((closed, "[CLOSED_PORT]"));
    f.ports.push((elsewhere, "[OTHER_PORT]"));
    let (w, a) = (f.wintermute.port, f.armitage.port);
    let config = f.litellm_config(&format!(
        r#"model_list:
  - model_name: local/reasoner
    litellm_params:
      model: openai/{WINTERMUTE}
      api_base: http://127.0.0.2:{w}/v1
      api_key: none
  - model_name: local/chat
    litellm_params:
      model: hosted_vllm/{ARMITAGE}
      api_base: http://127.0.0.3:{a}/v1/
      api_key: none
  - model_name: no-path
    litellm_params:
      model: openai/{WINTERMUTE}
      api_base: http://127.0.0.2:{w}
      api_key: none
  - model_name: other-path
    litellm_params:
      model: openai/{WINTERMUTE}
      api_base: http://127.0.0.2:{w}/api/v1
      api_key: none
  - model_name: wrong-port
    litellm_params:
      model: openai/{WINTERMUTE}
      api_base: http://127.0.0.2:{closed}/v1
      api_key: none
  - model_name: tls
    litellm_params:
      model: openai/{WINTERMUTE}
      api_base: https://127.0.0.2:{w}/v1
      api_key: none
  - model_name: wrong-name
    litellm_params:
      model: openai/llama31-8b
      api_base: http://127.0.0.2:{w}/v1
      api_key: none
  - model_name: quiet
    litellm_params:
      model: openai/{ARMITAGE}
      api_base: http://127.0.0.3:{a}
      api_key: none
  - model_name: elsewhere
    litellm_params:
      model: openai/anything
      api_base: http://127.0.0.9:{elsewhere}/v1
      api_key: none
router_settings:
  num_retries: 0
  fallbacks:
    - quiet: [local/reasoner]
"#
    ));
    let run = f.p.run(&["check", "--verbose"]).expect(1);
    insta::assert_snapshot!(f.filter(&run.stdout), @r#"
    note: motoko (litellm-route-api-base): /opt/litellm/litellm.config.yaml model_list[8].litellm_params.api_base: route `elsewhere` points at 127.0.0.9:[OTHER_PORT], where no inventory host renders a vLLM config (a file with a `vllm:` mapping): left alone
    check failed: litellm-route-api-base
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[2].litellm_params.api_base
      problem:  route `no-path` has no path, but vLLM's OpenAI server serves under /v1: LiteLLM posts to /chat/completions, which vLLM answers 404
      expected: http://127.0.0.2:[WINTERMUTE_PORT]/v1

    check failed: litellm-route-api-base
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[3].litellm_params.api_base
      problem:  route `other-path` has path `/api/v1`, but vLLM's OpenAI server serves under /v1: LiteLLM posts to /api/v1/chat/completions, which vLLM answers 404
      expected: http://127.0.0.2:[WINTERMUTE_PORT]/v1

    check failed: litellm-route-api-base
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[4].litellm_params.api_base
      problem:  route `wrong-port` goes to port [CLOSED_PORT] of 127.0.0.2, but wintermute's vLLM (/vllm/config.yml) listens on [WINTERMUTE_PORT] (vllm.port): nothing answers there, so every request is a 500 "Connection error"
      expected: http://127.0.0.2:[WINTERMUTE_PORT]/v1

    check failed: litellm-route-api-base
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[5].litellm_params.api_base
      problem:  route `tls` speaks https to 127.0.0.2:[WINTERMUTE_PORT], but wintermute's vLLM (/vllm/config.yml) serves plain http (no TLS flag in its config): LiteLLM's TLS handshake fails and every request is a 500 "Connection error"
      expected: http://127.0.0.2:[WINTERMUTE_PORT]/v1

    check failed: litellm-route-served-name
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[6].litellm_params.model
      problem:  route `wrong-name` asks for `llama31-8b` at 127.0.0.2:[WINTERMUTE_PORT], but wintermute's vLLM serves `llama31-8b-wintermute` (/vllm/config.yml: vllm.served_model_name); vLLM answers 404 for any other name
      expected: openai/llama31-8b-wintermute

    check failed: litellm-route-api-base
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[7].litellm_params.api_base
      problem:  route `quiet` has no path, but vLLM's OpenAI server serves under /v1: LiteLLM posts to /chat/completions, which vLLM answers 404
      expected: http://127.0.0.3:[ARMITAGE_PORT]/v1

    Checks: 6 failed, 11 passed on 3 hosts.
    "#);
    // plan and apply show the same notes with --verbose (on stderr, apart from the plan).
    let plan = f.p.run(&["plan", "--verbose"]).expect(1);
    assert!(
        plan.stderr
            .starts_with("note: motoko (litellm-route-api-base): "),
        "{}",
        plan.stderr
    );
    assert!(!f.p.run(&["plan"]).expect(1).stderr.contains("note:"));

    let litellm = f.litellm(&config, &[]);
    // The routes the check passes are answered, by openai/ and by hosted_vllm/.
    assert_answered_by(&litellm.chat("local/reasoner", "hi"), WINTERMUTE);
    assert_answered_by(&litellm.chat("local/chat", "hi"), ARMITAGE);
    f.wintermute.clear();
    // Path: LiteLLM appends /chat/completions to whatever api_base has.
    assert_fails(&litellm.chat("no-path", "hi"), 404, "NotFoundError");
    assert_fails(&litellm.chat("other-path", "hi"), 404, "NotFoundError");
    let paths: Vec<String> = f.wintermute.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        ["/chat/completions", "/api/v1/chat/completions"],
        "{}",
        litellm.log()
    );
    // Port: nothing listens there.
    assert_fails(&litellm.chat("wrong-port", "hi"), 500, "Connection error");
    // Scheme: a TLS handshake with vLLM's plain-http server.
    f.wintermute.clear();
    assert_fails(&litellm.chat("tls", "hi"), 500, "Connection error");
    assert!(
        f.wintermute.seen().iter().any(|s| s.method == "TLS"),
        "{:?}",
        f.wintermute.seen()
    );
    // Model name: vLLM's 404.
    assert_fails(
        &litellm.chat("wrong-name", "hi"),
        404,
        "The model `llama31-8b` does not exist.",
    );
    // The issue's case: a broken route with a fallback answers 200, from the fallback.
    f.armitage.clear();
    assert_answered_by(&litellm.chat("quiet", "hi"), WINTERMUTE);
    let seen = f.armitage.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/chat/completions");
}

#[test]
fn environment_names_the_compose_service_lacks_fail_in_real_litellm() {
    const KEY: &str = "vllm-secret-key";
    let f = fleet(
        Serve {
            name: WINTERMUTE.into(),
            api_key: Some(KEY.into()),
            ..Serve::default()
        },
        Serve {
            name: ARMITAGE.into(),
            ..Serve::default()
        },
        &[
            ("docker-compose.yml", "/opt/litellm/docker-compose.yml"),
            ("litellm.env", "/opt/litellm/.env"),
        ],
    );
    let w = f.wintermute.port;
    f.p.template(
        "docker-compose.yml",
        &format!(
            r#"services:
  litellm:
    image: ghcr.io/berriai/litellm:main-stable
    env_file:
      - .env
    environment:
      VLLM_KEY_FROM_COMPOSE: {KEY}
      VLLM_PASSED:
    volumes:
      - ./litellm.config.yaml:/app/config.yaml:ro
    command: ["--config", "/app/config.yaml", "--port", "4000"]
"#
        ),
    )
    .template(
        "litellm.env",
        &format!("VLLM_API_KEY={KEY}\nVLLM_EMPTY_KEY=\n"),
    );
    let route = |name: &str, key: &str| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openai/{WINTERMUTE}\n      api_base: http://127.0.0.2:{w}/v1\n{key}"
        )
    };
    let key = |name: &str| format!("      api_key: os.environ/{name}\n");
    let config = f.litellm_config(&format!(
        "model_list:\n{}{}{}{}{}{}router_settings:\n  num_retries: 0\ngeneral_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n",
        route("from-env-file", &key("VLLM_API_KEY")),
        route("from-environment", &key("VLLM_KEY_FROM_COMPOSE")),
        route("misspelt", &key("VLLM_APIKEY")),
        route("empty", &key("VLLM_EMPTY_KEY")),
        route("passed-through", &key("VLLM_PASSED")),
        route("no-api-key", ""),
    ));
    let run = f.p.run(&["check"]).expect(1);
    insta::assert_snapshot!(f.filter(&run.stdout), @r#"
    check failed: litellm-env
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[2].litellm_params.api_key
      problem:  reads os.environ/VLLM_APIKEY, which service `litellm` of /opt/litellm/docker-compose.yml does not define (env_file /opt/litellm/.env: VLLM_API_KEY, VLLM_EMPTY_KEY; environment: VLLM_KEY_FROM_COMPOSE); LiteLLM starts without it, then fails every request to route `misspelt` (500 "Missing credentials")
      expected: VLLM_APIKEY=<value> in /opt/litellm/.env (env_file of service `litellm` of /opt/litellm/docker-compose.yml)

    check failed: litellm-env
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[3].litellm_params.api_key
      problem:  reads os.environ/VLLM_EMPTY_KEY, which is empty in /opt/litellm/.env for service `litellm` of /opt/litellm/docker-compose.yml: LiteLLM reads an empty value as none; LiteLLM starts without it, then fails every request to route `empty` (500 "Missing credentials")
      expected: a value for VLLM_EMPTY_KEY in /opt/litellm/.env (env_file of service `litellm` of /opt/litellm/docker-compose.yml)

    check failed: litellm-env
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[4].litellm_params.api_key
      problem:  reads os.environ/VLLM_PASSED, which environment: of service `litellm` of /opt/litellm/docker-compose.yml names without a value: it would come from the shell `docker compose` runs in, which deploy does not render; LiteLLM starts without it, then fails every request to route `passed-through` (500 "Missing credentials")
      expected: VLLM_PASSED=<value> in /opt/litellm/.env (env_file of service `litellm` of /opt/litellm/docker-compose.yml)

    check failed: litellm-env
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      general_settings.master_key
      problem:  reads os.environ/LITELLM_MASTER_KEY, which service `litellm` of /opt/litellm/docker-compose.yml does not define (env_file /opt/litellm/.env: VLLM_API_KEY, VLLM_EMPTY_KEY; environment: VLLM_KEY_FROM_COMPOSE); LiteLLM then starts with no master key and lets every client in without one
      expected: LITELLM_MASTER_KEY=<value> in /opt/litellm/.env (env_file of service `litellm` of /opt/litellm/docker-compose.yml)

    check failed: litellm-env
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[5].litellm_params
      problem:  route `no-api-key` has no api_key, so LiteLLM's openai provider reads OPENAI_API_KEY, which service `litellm` of /opt/litellm/docker-compose.yml does not define (env_file /opt/litellm/.env: VLLM_API_KEY, VLLM_EMPTY_KEY; environment: VLLM_KEY_FROM_COMPOSE); LiteLLM starts without it, then fails every request to route `no-api-key` (500 "Missing credentials")
      expected: api_key: os.environ/NAME with NAME defined in /opt/litellm/.env (env_file of service `litellm` of /opt/litellm/docker-compose.yml) ("none" for a server that needs no key), or OPENAI_API_KEY=<value> in /opt/litellm/.env (env_file of service `litellm` of /opt/litellm/docker-compose.yml)

    Checks: 5 failed, 14 passed on 3 hosts.
    "#);

    // The stand-in refuses a request without its key, as vLLM's --api-key does.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let direct = agent
        .get(&format!("http://127.0.0.2:{w}/v1/models"))
        .call()
        .expect("GET the stand-in");
    assert_eq!(direct.status().as_u16(), 401);

    // What Compose gives the service: the env_file's names and environment:'s values
    // (VLLM_PASSED is in no environment systemd gives `docker compose`).
    let litellm = f.litellm(
        &config,
        &[
            ("VLLM_API_KEY", KEY),
            ("VLLM_EMPTY_KEY", ""),
            ("VLLM_KEY_FROM_COMPOSE", KEY),
        ],
    );
    f.wintermute.clear();
    // Defined: answered with the key. These requests carry no key of their own: without
    // LITELLM_MASTER_KEY, LiteLLM lets every client in.
    assert_answered_by(&litellm.chat("from-env-file", "hi"), WINTERMUTE);
    assert_answered_by(&litellm.chat("from-environment", "hi"), WINTERMUTE);
    let auth: Vec<Option<String>> = f
        .wintermute
        .seen()
        .into_iter()
        .map(|s| s.authorization)
        .collect();
    assert_eq!(
        auth,
        [Some(format!("Bearer {KEY}")), Some(format!("Bearer {KEY}"))]
    );
    // Undefined, empty, passed through, or no api_key at all: LiteLLM refuses to call.
    for route in ["misspelt", "empty", "passed-through", "no-api-key"] {
        assert_fails(&litellm.chat(route, "hi"), 500, "Missing credentials");
    }
    assert_eq!(
        f.wintermute.seen().len(),
        2,
        "no request without a key went out"
    );
}

/// A route to 127.0.0.9, which no inventory host is: the route checks leave it alone, and
/// every request to it fails, so that its fallbacks run.
fn unreachable(name: &str, port: u16) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params:\n      model: openai/gone\n      api_base: http://127.0.0.9:{port}/v1\n      api_key: none\n"
    )
}

fn to_vllm(name: &str, served: &str, ip: &str, port: u16) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params:\n      model: openai/{served}\n      api_base: http://{ip}:{port}/v1\n      api_key: none\n"
    )
}

/// wintermute with a short context (LONG prompts exceed it), armitage with a long one.
fn router_fleet() -> (Fleet, String) {
    let mut f = fleet(
        Serve {
            name: WINTERMUTE.into(),
            short_context: true,
            ..Serve::default()
        },
        Serve {
            name: ARMITAGE.into(),
            ..Serve::default()
        },
        &[],
    );
    let gone = closed_port("127.0.0.9");
    f.ports.push((gone, "[OTHER_PORT]"));
    let (w, a) = (f.wintermute.port, f.armitage.port);
    let models = format!(
        "model_list:\n{}{}{}{}{}{}{}",
        unreachable("unreachable-1", gone),
        unreachable("unreachable-2", gone),
        unreachable("unreachable-3", gone),
        to_vllm("short-1", WINTERMUTE, "127.0.0.2", w),
        to_vllm("short-2", WINTERMUTE, "127.0.0.2", w),
        to_vllm("short-3", WINTERMUTE, "127.0.0.2", w),
        to_vllm("long", ARMITAGE, "127.0.0.3", a),
    );
    (f, models)
}

#[test]
fn fallback_shapes_litellm_misreads_fail_requests_in_real_litellm() {
    let (f, models) = router_fleet();
    let config = f.litellm_config(&format!(
        r#"{models}router_settings:
  num_retries: 0
  fallbacks:
    - unreachable-1: long
    - unreachable-2: [long]
  default_fallbacks: long
  context_window_fallbacks:
    - short-1: [long]
      short-2: [long]
    - "*": [long]
"#
    ));
    let run = f.p.run(&["check"]).expect(1);
    insta::assert_snapshot!(f.filter(&run.stdout), @r#"
    check failed: litellm-router-names
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      router_settings.fallbacks[0].unreachable-1
      problem:  falls back to the string `long`, not a list; LiteLLM walks it character by character (model `l`, ...), so the fallback fails
      expected: [long]

    check failed: litellm-router-names
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      router_settings.context_window_fallbacks[0]
      problem:  maps 2 model groups (short-1, short-2) in one item; LiteLLM reads only the first: short-2 never fall back
      expected: one item per model group: `- model_name: [fallback model_names]`

    check failed: litellm-router-names
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      router_settings.context_window_fallbacks[1].*
      problem:  falls back from `*`, which is a wildcard only in `fallbacks`: LiteLLM looks up context_window_fallbacks by exact model_name, so this never applies
      expected: one of: unreachable-1, unreachable-2, unreachable-3, short-1, short-2, short-3, long

    check failed: litellm-router-names
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      router_settings.default_fallbacks
      problem:  is a string (`long`), not a list; LiteLLM walks it as the `*` fallback's list (a string character by character), so the fallback fails
      expected: a list of model_names (one of: unreachable-1, unreachable-2, unreachable-3, short-1, short-2, short-3, long)

    Checks: 4 failed, 7 passed on 3 hosts.
    "#);

    let litellm = f.litellm(&config, &[]);
    // The shapes the check passes work: a list of one-key mappings of lists.
    assert_answered_by(&litellm.chat("unreachable-2", "hi"), ARMITAGE);
    assert_answered_by(&litellm.chat("short-1", "LONG"), ARMITAGE);
    // A string for a list: LiteLLM tries models `l`, `o`, ... (default_fallbacks likewise).
    let walked = litellm.chat("unreachable-1", "hi");
    assert_fails(&walked, 500, "Connection error");
    assert!(
        walked.error().contains("You passed in model="),
        "{walked:?}"
    );
    assert_fails(
        &litellm.chat("unreachable-3", "hi"),
        500,
        "You passed in model=",
    );
    // The second key of a context-window item, and `*` there: no fallback.
    assert_fails(
        &litellm.chat("short-2", "LONG"),
        400,
        "maximum context length",
    );
    assert_fails(
        &litellm.chat("short-3", "LONG"),
        400,
        "maximum context length",
    );
    drop(litellm);

    // A name for an item of context_window_fallbacks: every lookup that reaches it fails.
    let config = f.litellm_config(&format!(
        r#"{models}router_settings:
  num_retries: 0
  context_window_fallbacks:
    - short-1: [long]
    - long
"#
    ));
    let run = f.p.run(&["check"]).expect(1);
    insta::assert_snapshot!(f.filter(&run.stdout), @r#"
    check failed: litellm-router-names
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      router_settings.context_window_fallbacks[1]
      problem:  is a string (`long`), not a mapping; every context-window fallback that reaches it fails ("... object has no attribute 'keys'")
      expected: `model_name: [fallback model_names]`

    Checks: 1 failed, 8 passed on 3 hosts.
    "#);
    let litellm = f.litellm(&config, &[]);
    assert_answered_by(&litellm.chat("short-1", "LONG"), ARMITAGE);
    assert_fails(
        &litellm.chat("short-2", "LONG"),
        400,
        "'str' object has no attribute 'keys'",
    );
}

#[test]
fn fallback_shapes_litellm_refuses_stop_real_litellm_from_starting() {
    let (f, models) = router_fleet();
    let dir = f.p.path().join("litellm");
    std::fs::create_dir_all(&dir).expect("litellm dir");
    let cases = [
        (
            "  fallbacks:\n    - unreachable-1: [long]\n      unreachable-2: [long]\n",
            "must have exactly one key, but has 2 keys",
        ),
        (
            "  fallbacks:\n    - long\n",
            "Item 'long' is not a dictionary.",
        ),
    ];
    let mut reports = Vec::new();
    for (fallbacks, refusal) in cases {
        let config = f.litellm_config(&format!(
            "{models}router_settings:\n  num_retries: 0\n{fallbacks}"
        ));
        let run = f.p.run(&["check"]).expect(1);
        reports.push(f.filter(&run.stdout));
        match litellm::start(&dir, &config, &[]) {
            Started::Exited { code, log } => {
                assert_eq!(code, Some(3), "{log}");
                assert!(log.contains(refusal), "{log}");
            }
            Started::Running(l) => panic!("LiteLLM started on {config}:\n{}", l.log()),
        }
    }
    insta::assert_snapshot!(reports.join("---\n"), @r#"
    check failed: litellm-router-names
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      router_settings.fallbacks[0]
      problem:  maps 2 model groups (unreachable-1, unreachable-2) in one item; LiteLLM's router refuses to start ("must have exactly one key, but has 2 keys")
      expected: one item per model group: `- model_name: [fallback model_names]`

    Checks: 1 failed, 8 passed on 3 hosts.
    ---
    check failed: litellm-router-names
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      router_settings.fallbacks[0]
      problem:  is a string (`long`), not a mapping; LiteLLM's router refuses to start ("Item 'long' is not a dictionary.")
      expected: `model_name: [fallback model_names]`

    Checks: 1 failed, 8 passed on 3 hosts.
    "#);
}
