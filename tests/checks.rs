//! Checks at plan time: both seed outages are caught before any host is contacted, with a
//! message naming host, file, key and what it should be; the fixed configs pass; operators
//! add their own rules in deploy.yml; the repo's real fleet passes.

use std::path::Path;
use std::process::Command;

use crate::support::project::Project;

/// motoko routes `local/reasoner` to wintermute's vLLM, as in the seeds. The LiteLLM route
/// is written literally here (seed 001's `wintermute_model_display`), so it can disagree
/// with what wintermute's vLLM config serves.
fn seed_fleet(wintermute_vllm: &str, router_extra: &str) -> Project {
    let p = Project::new();
    p.local_hosts(&[("litellm", &["motoko"]), ("vllm", &["wintermute"])])
        .file("hosts/host_vars/wintermute.yml", wintermute_vllm)
        .file(
            "hosts/group_vars/litellm.yml",
            "wintermute_model_display: openai/llama31-8b-wintermute\n",
        )
        .manifest(
            r#"
groups:
  litellm:
    files:
      - template: litellm.config.yaml.j2
        dest: /opt/litellm/litellm.config.yaml
  vllm:
    files:
      - template: vllm.config.yml.j2
        dest: /Users/mdt/dev/wintermute/config.yml
"#,
        )
        .template(
            "litellm.config.yaml.j2",
            &format!(
                r#"model_list:
  - model_name: local/reasoner
    litellm_params:
      model: {{{{ wintermute_model_display }}}}
      api_base: http://wintermute:8000/v1
  - model_name: qwen-coder-vllm
    litellm_params:
      model: openai/Qwen/Qwen2.5-Coder-7B-Instruct-AWQ
      api_base: http://localhost:8001/v1
  - model_name: openai/strong
    litellm_params:
      model: openai/gpt-4.1-mini
router_settings:
  routing_strategy: usage-based-routing-v2
{router_extra}  allowed_fails: 3
  fallbacks:
    - local/reasoner: ["openai/strong"]
"#
            ),
        )
        .template(
            "vllm.config.yml.j2",
            "vllm:\n{{ vllm | to_nice_yaml | indent(2, true) }}",
        );
    p
}

/// Seed 001: wintermute's vLLM started without a served name.
const NO_SERVED_NAME: &str =
    "vllm:\n  model: casperhansen/llama-3-8b-instruct-awq\n  port: 8000\n  max_model_len: 9000\n";
const SERVED_NAME: &str = "vllm:\n  model: casperhansen/llama-3-8b-instruct-awq\n  served_model_name: llama31-8b-wintermute\n  port: 8000\n  max_model_len: 9000\n";

/// Seed 002/003: a list under `model_group_alias`.
const ALIAS_LIST: &str =
    "  model_group_alias:\n    qwen-coder-vllm:\n      - Qwen/Qwen2.5-Coder-7B-Instruct-AWQ\n";

#[test]
fn seed_404_wrong_served_name_is_refused_before_any_host() {
    let p = seed_fleet(NO_SERVED_NAME, "");
    let run = p.run(&["check"]).expect(1);
    insta::assert_snapshot!(p.filter(&run.stdout), @r"
    check failed: litellm-route-served-name
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      model_list[0].litellm_params.model
      problem:  route `local/reasoner` asks for `llama31-8b-wintermute` at wintermute:8000, but wintermute's vLLM serves `casperhansen/llama-3-8b-instruct-awq` (/Users/mdt/dev/wintermute/config.yml: vllm.model); without served_model_name vLLM serves the model's path, so requests 404 (or set served_model_name: llama31-8b-wintermute in wintermute's vLLM config)
      expected: openai/casperhansen/llama-3-8b-instruct-awq

    Checks: 1 failed, 2 passed on 2 hosts.
    ");
    // `--host motoko` alone still checks against wintermute's rendered config.
    p.run(&["check", "--host", "motoko"]).expect(1);
    let plan = p.run(&["plan"]).expect(1);
    assert!(
        plan.stderr
            .starts_with("error: check failed: litellm-route-served-name"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr
            .ends_with("refusing to go on: 1 check failed; no host was contacted\n"),
        "{}",
        plan.stderr
    );
    p.run(&["apply", "--yes"]).expect(1);
    assert!(!p.path().join("roots").exists(), "no host may be touched");
}

#[test]
fn seed_404_fixed_by_the_served_name_passes() {
    let p = seed_fleet(SERVED_NAME, "");
    let run = p.run(&["check"]).expect(0);
    assert_eq!(run.stdout, "Checks: all 3 passed on 2 hosts.\n");
    p.run(&["apply", "--yes"]).expect(0);
}

#[test]
fn seed_router_crash_list_in_model_group_alias_is_refused() {
    let p = seed_fleet(SERVED_NAME, ALIAS_LIST);
    let run = p.run(&["plan"]).expect(1);
    insta::assert_snapshot!(p.filter(&run.stderr), @r#"
    error: check failed: litellm-router-names
      host:     motoko
      file:     /opt/litellm/litellm.config.yaml
      key:      router_settings.model_group_alias.qwen-coder-vllm
      problem:  alias `qwen-coder-vllm` maps to a list (["Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"]), not a string; LiteLLM's router fails every request to it with "list indices must be integers or slices, not str"
      expected: a string naming one model_name (one of: local/reasoner, qwen-coder-vllm, openai/strong), or no alias at all: a model_name is already a name clients can use

    refusing to go on: 1 check failed; no host was contacted
    "#);
    assert!(!p.path().join("roots").exists(), "no host may be touched");
}

#[test]
fn router_names_must_exist() {
    let alias = "  model_group_alias:\n    coder: qwen-coder-vlm\n";
    let p = seed_fleet(SERVED_NAME, alias);
    let run = p.run(&["check"]).expect(1);
    assert!(
        run.stdout
            .contains("alias `coder` names `qwen-coder-vlm`, which is no model_name"),
        "{}",
        run.stdout
    );
    // The seeds' fix: a string naming a model_name (or no alias at all).
    let p = seed_fleet(
        SERVED_NAME,
        "  model_group_alias:\n    coder: qwen-coder-vllm\n",
    );
    p.run(&["check"]).expect(0);
}

#[test]
fn operators_add_their_own_check_in_deploy_yml() {
    let p = seed_fleet(SERVED_NAME, "");
    let manifest = r#"
checks:
  - name: vllm context fits the LiteLLM limit
    hosts: vllm
    that: files['/Users/mdt/dev/wintermute/config.yml'].vllm.max_model_len >= min_context
    message: "max_model_len is {{ files['/Users/mdt/dev/wintermute/config.yml'].vllm.max_model_len }}, below {{ min_context }}"
    file: /Users/mdt/dev/wintermute/config.yml
    key: vllm.max_model_len
  - name: motoko routes to every vLLM host
    hosts: litellm
    that: groups['vllm'] | select('in', hostfiles[inventory_hostname]['/opt/litellm/litellm.config.yaml'].model_list | map(attribute='litellm_params.api_base') | join(' ')) | list | length == groups['vllm'] | length
groups:
  litellm:
    files:
      - template: litellm.config.yaml.j2
        dest: /opt/litellm/litellm.config.yaml
  vllm:
    files:
      - template: vllm.config.yml.j2
        dest: /Users/mdt/dev/wintermute/config.yml
"#;
    p.manifest(manifest)
        .file("hosts/group_vars/all.yml", "min_context: 16384\n");
    let run = p.run(&["check"]).expect(1);
    insta::assert_snapshot!(p.filter(&run.stdout), @r"
    check failed: vllm context fits the LiteLLM limit
      host:     wintermute
      file:     /Users/mdt/dev/wintermute/config.yml
      key:      vllm.max_model_len
      problem:  max_model_len is 9000, below 16384

    Checks: 1 failed, 4 passed on 2 hosts.
    ");
    p.file("hosts/group_vars/all.yml", "min_context: 8192\n");
    p.run(&["check"]).expect(0);
    // An expression that cannot be evaluated is a failure that says why.
    p.file("hosts/group_vars/all.yml", "");
    let run = p.run(&["check"]).expect(1);
    assert!(
        run.stdout.contains("could not be evaluated") && run.stdout.contains("min_context"),
        "{}",
        run.stdout
    );
}

fn deploy_in_repo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .arg("--repo")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .env("NO_COLOR", "1")
        // No identity of the machine's user may stand in for the one the test gives.
        .env("HOME", "/nonexistent")
        .env_remove("DEPLOY_AGE_IDENTITY")
        .output()
        .expect("run deploy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The two secrets come from secrets/motoko.yml.age, encrypted (with stand-in values) to the
/// demo key the tests hold.
const SECRETS: [&str; 2] = [
    "--identity",
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fleet-demo-identity.txt"
    ),
];

#[test]
fn the_real_fleet_passes_its_checks_without_contacting_a_host() {
    let mut args = vec!["check"];
    args.extend(SECRETS);
    let (code, stdout, stderr) = deploy_in_repo(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("Checks: all "), "{stdout}");
    assert!(stdout.ends_with(" passed on 3 hosts.\n"), "{stdout}");
    // Without an identity, the secrets cannot be opened and nothing is checked.
    let (code, _, stderr) = deploy_in_repo(&["check"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no age identity found"), "{stderr}");
}

#[test]
fn the_real_fleet_windows_hosts_are_checked_with_their_password_secrets() {
    let mut args = vec!["check", "--host", "wintermute", "--host", "armitage"];
    args.extend(SECRETS);
    let (code, stdout, stderr) = deploy_in_repo(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Their ansible_password is in secrets/<host>.yml.age: no identity, no check. (No plan
    // runs here: it would contact the real hosts.)
    let (code, _, stderr) = deploy_in_repo(&["check", "--group", "vllm"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no age identity found"), "{stderr}");
    assert!(stderr.contains("wintermute.yml.age"), "{stderr}");
}

/// A LiteLLM config on motoko reading A, B, C and D through os.environ/, and the Compose
/// file `compose` (none when empty) beside an `.env` defining A.
fn env_fleet(compose: &str) -> Project {
    let p = Project::new();
    let compose_file = if compose.is_empty() {
        ""
    } else {
        "      - template: compose.yml\n        dest: /opt/litellm/docker-compose.yml\n"
    };
    p.local_hosts(&[("litellm", &["motoko"])])
        .manifest(&format!(
            "groups:\n  litellm:\n    files:\n      - template: litellm.yaml\n        dest: /opt/litellm/config/litellm.yaml\n      - template: env\n        dest: /opt/litellm/.env\n{compose_file}"
        ))
        .template("env", "A=1\n")
        .template(
            "litellm.yaml",
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/A\n      api_base: os.environ/B\n      organization: os.environ/C\n      api_version: os.environ/D\n",
        )
        .template("compose.yml", compose);
    p
}

#[test]
fn env_check_reads_compose_files_as_compose_does() {
    // The service is the one that mounts the config (here with the long syntax), not `db`,
    // which has every name; a list-form environment's bare name is the shell's.
    let p = env_fleet(
        r#"services:
  db:
    image: postgres
    environment: [A=1, B=1, C=1, D=1]
  proxy:
    image: registry.example/proxy:1
    env_file: .env
    environment:
      - B=set
      - C
    volumes:
      - type: bind
        source: ./config/litellm.yaml
        target: /app/config.yaml
"#,
    );
    let run = p.run(&["check", "--verbose"]).expect(1);
    insta::assert_snapshot!(run.stdout, @r"
    note: motoko (litellm-route-api-base): /opt/litellm/config/litellm.yaml model_list[0].litellm_params.api_base: route `m` reads its api_base from os.environ/B: not checked against a vLLM host
    check failed: litellm-env
      host:     motoko
      file:     /opt/litellm/config/litellm.yaml
      key:      model_list[0].litellm_params.organization
      problem:  reads os.environ/C, which environment: of service `proxy` of /opt/litellm/docker-compose.yml names without a value: it would come from the shell `docker compose` runs in, which deploy does not render; LiteLLM starts without it: route `m`'s organization is unset
      expected: C=<value> in /opt/litellm/.env (env_file of service `proxy` of /opt/litellm/docker-compose.yml)

    check failed: litellm-env
      host:     motoko
      file:     /opt/litellm/config/litellm.yaml
      key:      model_list[0].litellm_params.api_version
      problem:  reads os.environ/D, which service `proxy` of /opt/litellm/docker-compose.yml does not define (env_file /opt/litellm/.env: A; environment: B); LiteLLM starts without it: route `m`'s api_version is unset
      expected: D=<value> in /opt/litellm/.env (env_file of service `proxy` of /opt/litellm/docker-compose.yml)

    Checks: 2 failed, 2 passed on 1 host.
    ");
    // An env_file deploy does not render cannot be read: what it would define is unknown.
    let p = env_fleet(
        "services:\n  litellm:\n    image: litellm\n    env_file:\n      - path: ./.env\n      - path: /etc/litellm.env\n        required: false\n    environment: {B: x, C: y}\n",
    );
    let run = p.run(&["check"]).expect(1);
    assert!(
        run.stdout.contains("does not define (env_file /opt/litellm/.env: A; environment: B, C; env_file /etc/litellm.env: not rendered by deploy for motoko, so unknown)"),
        "{}",
        run.stdout
    );
    // No Compose file: the names are not checked, and --verbose says so.
    let p = env_fleet("");
    let run = p.run(&["check", "--verbose"]).expect(0);
    assert!(
        run.stdout.contains("\nnote: motoko (litellm-env): /opt/litellm/config/litellm.yaml: no Docker Compose service among motoko's rendered files mounts /opt/litellm/config/litellm.yaml (or runs a litellm image): the environment variables it reads (A, B, C, D) are not checked\n"),
        "{}",
        run.stdout
    );
}
