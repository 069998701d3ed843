//! The README's main command works: the example fleet in examples/lab plans and applies, and
//! a second run changes nothing.

use std::path::Path;
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".hosts" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn deploy(repo: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn lab_applies_then_has_no_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("lab");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lab"),
        &repo,
    );

    let (code, out) = deploy(&repo, &["apply", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Apply: 6 files written, 4 handlers run on 3 hosts."),
        "{out}"
    );
    let (code, out) = deploy(&repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");

    // The LiteLLM routes name what each vLLM host serves: the seeds' 404 cannot happen here.
    let root = repo.join(".hosts");
    let config =
        std::fs::read_to_string(root.join("motoko/opt/litellm/litellm.config.yaml")).unwrap();
    let config: serde_json::Value = serde_saphyr::from_str(&config).unwrap();
    for (host, route) in [("wintermute", "local/reasoner"), ("armitage", "local/chat")] {
        let vllm =
            std::fs::read_to_string(root.join(format!("{host}/Users/mdt/dev/{host}/config.yml")))
                .unwrap();
        let vllm: serde_json::Value = serde_saphyr::from_str(&vllm).unwrap();
        let served = vllm["vllm"]["served_model_name"].as_str().unwrap();
        let entry = config["model_list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model_name"] == route)
            .unwrap();
        assert_eq!(entry["litellm_params"]["model"], format!("openai/{served}"));
        assert_eq!(
            entry["litellm_params"]["api_base"],
            format!("http://{host}:8000/v1")
        );
    }
    assert_eq!(
        std::fs::read_to_string(root.join("motoko/var/log/deploy-lab/handlers.log")).unwrap(),
        "systemctl daemon-reload\nsystemctl restart litellm\n"
    );
}
