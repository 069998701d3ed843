//! The repo's real fleet (hosts/, templates/) renders to valid LiteLLM and Compose files,
//! with the vLLM served names written once, and CRLF on the Windows hosts. Renders only; no
//! host is contacted.

use std::path::PathBuf;
use std::time::Duration;

use deploy::desired::HostDesired;
use deploy::ops::{self, Options};
use deploy::transport::SshOptions;
use serde_json::Value;

/// Every host of the repo's real fleet, rendered (no host is contacted).
pub(crate) fn render_fleet() -> Vec<HostDesired> {
    let opts = Options {
        repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        inventories: Vec::new(),
        hosts: Vec::new(),
        groups: Vec::new(),
        limit: None,
        extra_vars: Default::default(),
        forks: 1,
        ssh: SshOptions {
            known_hosts_files: Vec::new(),
            accept_new_host_keys: false,
            home: None,
            connect_timeout: Duration::from_secs(1),
            known_hosts: Default::default(),
            read_limits: Default::default(),
        },
        // The stand-in secrets in secrets/motoko.yml.age are encrypted to this demo key.
        rev: None,
        escalation: Default::default(),
        vault_password: None,
        verbose: false,
        identities: vec![
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/fleet-demo-identity.txt"),
        ],
    };
    ops::render(&opts).expect("the real fleet renders").desired
}

fn file<'a>(hosts: &'a [HostDesired], host: &str, dest: &str) -> &'a [u8] {
    let h = hosts.iter().find(|h| h.host == host).expect("host");
    &h.files
        .iter()
        .find(|f| f.dest == dest)
        .unwrap_or_else(|| panic!("{host} has no {dest}"))
        .content
}

fn yaml(bytes: &[u8]) -> Value {
    serde_saphyr::from_str(std::str::from_utf8(bytes).expect("utf-8")).expect("YAML")
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("mapping")
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_subset(what: &str, got: &[&str], allowed: &[&str]) {
    for k in got {
        assert!(allowed.contains(k), "{what}: unknown key `{k}`");
    }
}

#[test]
fn litellm_config_has_litellm_proxy_shape_and_routes_by_served_name() {
    let hosts = render_fleet();
    let config = yaml(file(&hosts, "motoko", "/opt/litellm/litellm.config.yaml"));
    // Keys and shapes of LiteLLM's proxy config (docs: proxy/configs, router settings).
    assert_subset(
        "top level",
        &keys(&config),
        &[
            "model_list",
            "router_settings",
            "litellm_settings",
            "general_settings",
            "environment_variables",
        ],
    );
    let models = config["model_list"].as_array().expect("model_list");
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model_name"].as_str().expect("model_name"))
        .collect();
    assert_eq!(
        names,
        [
            "local/chat",
            "local/reasoner",
            "local/embed",
            "openai/strong",
            "openai/cheap"
        ]
    );
    for m in models {
        assert_subset(
            "model_list entry",
            &keys(m),
            &["model_name", "litellm_params", "model_info"],
        );
        assert!(m["litellm_params"]["model"].is_string());
    }
    let route = |name: &str| models.iter().find(|m| m["model_name"] == name).unwrap();
    assert_eq!(
        route("local/chat")["litellm_params"]["model"],
        "openai/qwen2.5-7b-armitage"
    );
    assert_eq!(
        route("local/chat")["litellm_params"]["api_base"],
        "http://armitage:8000/v1"
    );
    assert_eq!(
        route("local/reasoner")["litellm_params"]["model"],
        "openai/llama31-8b-wintermute"
    );
    assert_eq!(
        route("local/reasoner")["litellm_params"]["api_base"],
        "http://wintermute:8000/v1"
    );
    let router = &config["router_settings"];
    assert_subset(
        "router_settings",
        &keys(router),
        &[
            "routing_strategy",
            "num_retries",
            "timeout",
            "fallbacks",
            "context_window_fallbacks",
            "allowed_fails",
            "cooldown_time",
            "provider_budget_config",
            "model_group_alias",
        ],
    );
    assert_eq!(
        router["fallbacks"][0]["local/chat"],
        serde_json::json!(["local/reasoner", "openai/strong"])
    );
    assert_eq!(router["allowed_fails"], 3);
    assert_eq!(
        router["provider_budget_config"]["openai"]["budget_limit"],
        150
    );
    assert_eq!(
        config["general_settings"]["master_key"],
        "os.environ/LITELLM_MASTER_KEY"
    );
    let env = std::str::from_utf8(file(&hosts, "motoko", "/opt/litellm/.env")).unwrap();
    assert_eq!(
        env,
        "OPENAI_API_KEY=sk-REPLACE_ME\nLITELLM_MASTER_KEY=mkt-REPLACE_ME_SUPERLONG\n"
    );
}

#[test]
fn compose_file_has_compose_shape() {
    let hosts = render_fleet();
    let compose = yaml(file(&hosts, "motoko", "/opt/litellm/docker-compose.yml"));
    assert_eq!(keys(&compose), ["services"]);
    let service = &compose["services"]["litellm"];
    assert_subset(
        "service",
        &keys(service),
        &[
            "image",
            "container_name",
            "restart",
            "ports",
            "env_file",
            "volumes",
            "command",
        ],
    );
    assert_eq!(service["ports"], serde_json::json!(["8000:4000"]));
    assert_eq!(
        service["volumes"][0],
        "./litellm.config.yaml:/app/config.yaml:ro"
    );
}

#[test]
fn windows_hosts_get_crlf_vllm_configs_with_seed_001_keys() {
    let hosts = render_fleet();
    let dest = r"C:\Users\mdt\dev\wintermute\config.yml";
    let bytes = file(&hosts, "wintermute", dest);
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.contains("vllm:\r\n") && !text.replace("\r\n", "").contains('\n'));
    let vllm = &yaml(bytes)["vllm"];
    for key in [
        "enabled",
        "model",
        "served_model_name",
        "port",
        "container_name",
        "image",
        "max_model_len",
        "gpu_memory_utilization",
        "quantization",
        "tensor_parallel_size",
        "auto_switch",
        "check_interval_minutes",
        "idle_threshold_minutes",
    ] {
        assert!(vllm.get(key).is_some(), "missing {key}");
    }
    assert_eq!(vllm["served_model_name"], "llama31-8b-wintermute");
    assert_eq!(vllm["model"], "casperhansen/llama-3-8b-instruct-awq");
    let armitage = yaml(file(
        &hosts,
        "armitage",
        r"C:\Users\mdt\dev\armitage\config.yml",
    ));
    assert_eq!(armitage["vllm"]["max_num_seqs"], 1);
    // The handler fails loudly when Start-VLLM.ps1 is missing.
    let w = hosts.iter().find(|h| h.host == "wintermute").unwrap();
    let restart = &w.handlers[0].command;
    assert!(
        restart.contains(r"C:\Users\mdt\dev\wintermute\scripts\Start-VLLM.ps1")
            && restart.contains("Test-Path")
            && restart.contains("exit 1")
            && restart.contains("-Action Restart"),
        "{restart}"
    );
}

#[test]
fn windows_hosts_connect_with_ntlm_over_https_and_their_secret_password() {
    use deploy::transport::Connection;
    use deploy::transport::winrm::AuthKind;
    let hosts = render_fleet();
    for name in ["wintermute", "armitage"] {
        let h = hosts.iter().find(|h| h.host == name).expect("host");
        let Connection::WinRm(t) = &h.connection else {
            panic!("{name}: {:?}", h.connection);
        };
        assert_eq!(
            (
                t.address.as_str(),
                t.port,
                t.scheme.as_str(),
                t.user.as_str()
            ),
            (name, 5986, "https", "mdt")
        );
        assert_eq!(t.auth, AuthKind::Ntlm);
        // The stand-in value from secrets/<host>.yml.age (encrypted to the demo key).
        assert_eq!(
            t.password.as_deref(),
            Some(format!("stand-in-{name}-winrm-password").as_str())
        );
    }
}

#[test]
fn motoko_logs_in_as_mdt_and_becomes_root_with_sudo_and_its_secret_password() {
    use deploy::transport::Connection;
    use deploy::transport::escalation::BecomeMethod;
    let hosts = render_fleet();
    let h = hosts.iter().find(|h| h.host == "motoko").expect("motoko");
    let Connection::Ssh(t) = &h.connection else {
        panic!("motoko: {:?}", h.connection);
    };
    assert_eq!((t.address.as_str(), t.user.as_str()), ("motoko", "mdt"));
    let b = t.escalation.resolve().expect("become is on for motoko");
    assert_eq!((b.method, b.user.as_str()), (BecomeMethod::Sudo, "root"));
    // The stand-in value from secrets/motoko.yml.age (encrypted to the demo key).
    assert_eq!(b.password(), Some("mdt-sudo-REPLACE_ME"));
}

#[test]
fn start_vllm_ps1_ships_byte_for_byte_to_both_windows_hosts_and_restarts_vllm() {
    let hosts = render_fleet();
    let script =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("files/Start-VLLM.ps1"))
            .expect("files/Start-VLLM.ps1");
    for name in ["wintermute", "armitage"] {
        let dest = format!("C:\\Users\\mdt\\dev\\{name}\\scripts\\Start-VLLM.ps1");
        assert_eq!(file(&hosts, name, &dest), script.as_slice(), "{name}");
        let h = hosts.iter().find(|h| h.host == name).expect("host");
        let f = h.files.iter().find(|f| f.dest == dest).expect("the script");
        assert_eq!(f.notify, ["restart vllm"], "{name}");
    }
    // motoko does not get it.
    let motoko = hosts.iter().find(|h| h.host == "motoko").expect("motoko");
    assert!(
        !motoko
            .files
            .iter()
            .any(|f| f.dest.ends_with("Start-VLLM.ps1"))
    );
}
