//! Rolling restarts (`serial:`, `--serial`, `max_fail_percentage`): three local stand-in
//! vLLM hosts, each with its own stand-in vLLM HTTP server on 127.0.0.x. A host's handler
//! "restarts" its vLLM by writing the served name the server answers with; a broken host's
//! restart never brings its name back, so its `verify:` fails.

use std::path::PathBuf;

use crate::support::http::serve_on;
use crate::support::project::{Project, Run};

const HOSTS: [&str; 3] = ["gpu1", "gpu2", "gpu3"];

/// `broken` hosts restart without ever serving their name. `group` is extra deploy.yml
/// text for the vllm group (`serial:` and the like).
fn fleet(broken: &[&str], group: &str) -> (Project, PathBuf) {
    let p = Project::new();
    p.local_hosts(&[("vllm", &HOSTS)]);
    let log = p.path().join("restarts.log");
    for (i, host) in HOSTS.iter().enumerate() {
        let served = p.host_root(host).join("served");
        let addr = format!("127.0.0.{}", 11 + i);
        let port = serve_on(&addr, move |path| {
            if path != "/v1/models" {
                return (404, r#"{"detail":"Not Found"}"#.into());
            }
            let id = std::fs::read_to_string(&served).unwrap_or_else(|_| "the-model-path".into());
            (
                200,
                format!(r#"{{"object":"list","data":[{{"id":"{}"}}]}}"#, id.trim()),
            )
        });
        let restart = if broken.contains(host) {
            // Comes back serving the model's path, not the served name.
            "the-model-path"
        } else {
            "llama-{{ inventory_hostname }}"
        };
        p.file(
            &format!("hosts/host_vars/{host}.yml"),
            &format!("vllm_addr: {addr}\nvllm_port: {port}\nrestart_serves: \"{restart}\"\n"),
        );
    }
    p.manifest(&format!(
        r#"
groups:
  vllm:
{group}
    files:
      - template: config.yml.j2
        dest: /vllm/config.yml
        notify: restart vllm
    handlers:
      - name: restart vllm
        run: >-
          echo "start {{{{ inventory_hostname }}}}" >> '{log}';
          sleep 1;
          printf '%s' '{{{{ restart_serves }}}}' > "$DEPLOY_ROOT/served";
          echo "end {{{{ inventory_hostname }}}}" >> '{log}'
    verify:
      - name: vllm serves its name
        url: "http://{{{{ vllm_addr }}}}:{{{{ vllm_port }}}}/v1/models"
        json_path: "data[*].id"
        contains: "llama-{{{{ inventory_hostname }}}}"
        timeout: 2
"#,
        log = log.display()
    ))
    .template(
        "config.yml.j2",
        "vllm:\n  served_model_name: llama-{{ inventory_hostname }}\n",
    );
    (p, log)
}

fn restarted(log: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn written(p: &Project, host: &str) -> bool {
    p.host_file(host, "/vllm/config.yml").is_some()
}

fn summary_line<'a>(run: &'a Run, host: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.trim_start().starts_with("not started") && l.contains(host))
        .unwrap_or_else(|| panic!("no `not started` line for {host}:\n{}", run.stdout))
}

#[test]
fn serial_one_stops_at_the_host_whose_vllm_does_not_come_back() {
    let (p, log) = fleet(&["gpu2"], "    serial: 1");
    let run = p.run(&["apply", "--yes"]).expect(1);
    // gpu1 went first and passed; gpu2 was restarted and failed its verify; gpu3 was never
    // written nor restarted.
    assert_eq!(
        restarted(&log),
        ["start gpu1", "end gpu1", "start gpu2", "end gpu2"]
    );
    assert!(written(&p, "gpu1") && written(&p, "gpu2") && !written(&p, "gpu3"));
    assert!(
        run.stdout
            .contains("gpu1: wrote 1 file; ran restart vllm; verified vllm serves its name"),
        "{}",
        run.stdout
    );
    let line = summary_line(&run, "gpu3");
    assert!(
        line.contains("batch 2/3 of `vllm` failed (1 of 1: gpu2)"),
        "{line}"
    );
    assert!(
        run.stdout.contains("1 host failed; 1 host not started"),
        "{}",
        run.stdout
    );

    // The next apply goes on with what is left: gpu3 (gpu1 and gpu2 were written and their
    // restarts ran, so nothing is pending there).
    p.file(
        "hosts/host_vars/gpu2.yml",
        &std::fs::read_to_string(p.path().join("hosts/host_vars/gpu2.yml"))
            .expect("vars")
            .replace("the-model-path", "llama-{{ inventory_hostname }}"),
    );
    p.run(&["apply", "--yes"]).expect(0);
    let log_now = restarted(&log);
    assert_eq!(&log_now[4..], ["start gpu3", "end gpu3"]);
}

#[test]
fn a_canary_of_one_goes_alone_then_the_rest_together() {
    // `--serial` on the command line wins over deploy.yml (which has none here).
    let (p, log) = fleet(&[], "");
    p.run(&["apply", "--yes", "--serial", "1,100%"]).expect(0);
    let lines = restarted(&log);
    assert_eq!(&lines[..2], ["start gpu1", "end gpu1"], "{lines:?}");
    let mut rest = lines[2..].to_vec();
    rest.sort();
    assert_eq!(rest, ["end gpu2", "end gpu3", "start gpu2", "start gpu3"]);
    // gpu2 and gpu3 restarted together: both started before either ended (each restart
    // takes a second, far longer than starting the other).
    assert!(
        lines[2].starts_with("start") && lines[3].starts_with("start"),
        "{lines:?}"
    );

    // A broken canary: nothing else is touched.
    let (p, log) = fleet(&["gpu1"], "    serial: [1, \"100%\"]");
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert_eq!(restarted(&log), ["start gpu1", "end gpu1"]);
    assert!(!written(&p, "gpu2") && !written(&p, "gpu3"));
    for host in ["gpu2", "gpu3"] {
        assert!(summary_line(&run, host).contains("batch 1/2 of `vllm` failed (1 of 1: gpu1)"));
    }
}

#[test]
fn max_fail_percentage_decides_whether_a_partly_failed_batch_stops_the_run() {
    // Batches [gpu1, gpu2], [gpu3]; gpu2 fails: half the first batch.
    let (p, log) = fleet(&["gpu2"], "    serial: 2");
    p.run(&["apply", "--yes"]).expect(1);
    assert!(
        written(&p, "gpu3"),
        "without max_fail_percentage only a wholly failed batch stops"
    );
    assert!(restarted(&log).contains(&"end gpu3".to_string()));

    let (p, _) = fleet(&["gpu2"], "    serial: 2\n    max_fail_percentage: 40");
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(!written(&p, "gpu3"));
    assert!(summary_line(&run, "gpu3").contains("batch 1/2 of `vllm` failed (1 of 2: gpu2)"));

    // The command line's threshold wins over deploy.yml's.
    let (p, _) = fleet(&["gpu2"], "    serial: 2\n    max_fail_percentage: 40");
    p.run(&["apply", "--yes", "--max-fail-percentage", "50"])
        .expect(1);
    assert!(written(&p, "gpu3"), "50% failed is not more than 50%");
}

#[test]
fn serial_errors_name_deploy_yml() {
    let (p, _) = fleet(&[], "    serial: lots");
    let run = p.run(&["plan"]).expect(1);
    assert!(run.stderr.contains("deploy.yml:4"), "{}", run.stderr);
    assert!(run.stderr.contains("serial `lots`"), "{}", run.stderr);
    let run = p.run(&["apply", "--yes", "--serial", "150%"]).expect(2);
    assert!(run.stderr.contains("150%"), "{}", run.stderr);
}
