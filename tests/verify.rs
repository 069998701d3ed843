//! verify after apply: HTTP servers on 127.0.0.1 stand in for vLLM (serving the model's
//! path until its handler "restarts" it with the served name) and LiteLLM (`/health`).

use std::path::PathBuf;

use crate::support::http::serve;
use crate::support::project::Project;

/// vLLM's `/v1/models`: the model's path until `restarted` exists, then the served name.
fn fake_vllm(restarted: PathBuf) -> u16 {
    serve(move |path| {
        if path != "/v1/models" {
            return (404, r#"{"detail":"Not Found"}"#.into());
        }
        let id = if restarted.exists() {
            "llama31-8b-wintermute"
        } else {
            "casperhansen/llama-3-8b-instruct-awq"
        };
        (
            200,
            format!(r#"{{"object":"list","data":[{{"id":"{id}","object":"model"}}]}}"#),
        )
    })
}

fn fake_litellm() -> u16 {
    serve(|path| match path {
        "/health" => (200, r#"{"healthy_count":2}"#.into()),
        _ => (404, "{}".into()),
    })
}

/// motoko (LiteLLM) and wintermute (vLLM) as local stand-ins; `restart` is wintermute's
/// handler command.
fn project(restart: &str, vllm_timeout: f64) -> Project {
    let p = Project::new();
    let vllm_port = fake_vllm(p.host_root("wintermute").join("restarted"));
    let litellm_port = fake_litellm();
    p.local_hosts(&[("litellm", &["motoko"]), ("vllm", &["wintermute"])])
        .file(
            "hosts/host_vars/wintermute.yml",
            &format!("vllm_port: {vllm_port}\nserved_model_name: llama31-8b-wintermute\n"),
        )
        .file(
            "hosts/host_vars/motoko.yml",
            &format!("litellm_port: {litellm_port}\n"),
        )
        .manifest(&format!(
            r#"
groups:
  litellm:
    files:
      - template: litellm.j2
        dest: /opt/litellm/litellm.config.yaml
        notify: restart litellm
    handlers:
      - name: restart litellm
        run: "true"
    verify:
      - name: litellm health
        url: "http://127.0.0.1:{{{{ litellm_port }}}}/health"
  vllm:
    files:
      - template: vllm.j2
        dest: /config.yml
        notify: restart vllm
    handlers:
      - name: restart vllm
        run: {restart}
    verify:
      - name: vllm serves its name
        url: "http://127.0.0.1:{{{{ vllm_port }}}}/v1/models"
        json_path: "data[*].id"
        contains: "{{{{ served_model_name }}}}"
        timeout: {vllm_timeout}
"#
        ))
        .template("litellm.j2", "general_settings: {}\n")
        .template(
            "vllm.j2",
            "vllm:\n  served_model_name: {{ served_model_name }}\n  port: {{ vllm_port }}\n",
        );
    p
}

#[test]
fn verify_polls_until_the_restarted_vllm_serves_its_name() {
    let p = project(r#"touch "$DEPLOY_ROOT/restarted""#, 10.0);
    let plan = p.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains("verify vllm serves its name: GET http://127.0.0.1:")
            && plan
                .stdout
                .contains("/v1/models (expect status 200, data[*].id containing `llama31-8b-wintermute`; up to 10s)"),
        "{}",
        plan.stdout
    );
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout
            .contains("wintermute: wrote 1 file; ran restart vllm; verified vllm serves its name"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("motoko: wrote 1 file; ran restart litellm; verified litellm health"),
        "{}",
        run.stdout
    );
}

#[test]
fn verify_fails_the_host_with_expected_and_got_when_the_deadline_passes() {
    // The seeds' silent handler: nothing restarts, vLLM keeps serving the model's path.
    let p = project("\"true\"", 1.5);
    let started = std::time::Instant::now();
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "bounded by the timeout"
    );
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("  failed wintermute: "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        line.contains("verify `vllm serves its name` failed after ")
            && line.contains(
                r#"expected status 200, data[*].id containing `llama31-8b-wintermute`; got status 200, data[*].id = ["casperhansen/llama-3-8b-instruct-awq"]"#
            ),
        "{line}"
    );
    assert!(
        run.stdout
            .contains("motoko: wrote 1 file; ran restart litellm; verified litellm health"),
        "{}",
        run.stdout
    );
}

#[test]
fn verify_reports_a_server_that_is_not_there() {
    let p = project("\"true\"", 1.0);
    // Nothing listens on port 9 of 127.0.0.1 (discard, never served here).
    p.file(
        "hosts/host_vars/wintermute.yml",
        "vllm_port: 9\nserved_model_name: llama31-8b-wintermute\n",
    );
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(
        run.stdout
            .contains("failed wintermute: verify `vllm serves its name` failed")
            && run
                .stdout
                .contains("got cannot connect: GET http://127.0.0.1:9/v1/models"),
        "{}",
        run.stdout
    );
}
