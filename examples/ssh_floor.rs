//! The floor under any deploy over SSH: for each host of a list, connect, check the host key,
//! authenticate, run `true`, close; all hosts at once (up to FORKS), with deploy's own SSH
//! transport (the same code `deploy plan` uses). Prints one JSON line with the wall time.
//! Used by `bench/run.sh`; not part of the deploy binary.
//!
//!     cargo run --release --example ssh_floor -- FLEET_TSV KEY KNOWN_HOSTS [FORKS [COMMAND]]
//!
//! COMMAND (default `true`) is what each session runs, to price what a command costs the
//! hosts beside the bare session.
//!
//! FLEET_TSV has one host a line: name, address, port (tab-separated; more columns ignored).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use deploy::transport::ssh::SshTransport;
use deploy::transport::{SshOptions, SshTarget, Transport};
use futures::StreamExt;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=5).contains(&args.len()) {
        eprintln!("usage: ssh_floor FLEET_TSV KEY KNOWN_HOSTS [FORKS [COMMAND]]");
        return ExitCode::from(2);
    }
    let Ok(list) = std::fs::read_to_string(&args[0]) else {
        eprintln!("cannot read {}", args[0]);
        return ExitCode::from(2);
    };
    let targets: Vec<SshTarget> = list
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            Some(SshTarget {
                name: cols.first()?.to_string(),
                address: cols.get(1)?.to_string(),
                port: cols.get(2)?.parse().ok()?,
                user: "root".into(),
                private_key_file: Some(PathBuf::from(&args[1])),
                escalation: Default::default(),
            })
        })
        .collect();
    let forks = args
        .get(3)
        .and_then(|f| f.parse().ok())
        .unwrap_or(50usize)
        .max(1);
    let command = args.get(4).map_or("true", String::as_str);
    let opts = SshOptions {
        known_hosts_files: vec![PathBuf::from(&args[2])],
        accept_new_host_keys: false,
        home: None,
        connect_timeout: Duration::from_secs(10),
        known_hosts: Default::default(),
        read_limits: Default::default(),
    };
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cannot start the async runtime");
        return ExitCode::from(1);
    };
    let start = Instant::now();
    let results: Vec<Result<(), String>> = rt.block_on(
        futures::stream::iter(&targets)
            .map(|t| {
                let opts = &opts;
                async move {
                    let ssh = SshTransport::connect_with_agent(t, opts, None)
                        .await
                        .map_err(|e| format!("{}: {e}", t.name))?;
                    let out = ssh
                        .run(command)
                        .await
                        .map_err(|e| format!("{}: {e}", t.name));
                    ssh.close().await;
                    match out {
                        Ok(o) if o.success() => Ok(()),
                        Ok(o) => Err(format!("{}: `{command}` exited {:?}", t.name, o.status)),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffer_unordered(forks)
            .collect(),
    );
    let wall = start.elapsed().as_secs_f64();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for e in &failed {
        eprintln!("{e}");
    }
    println!(
        "{{\"hosts\": {}, \"ok\": {}, \"forks\": {forks}, \"wall_s\": {wall:.4}}}",
        targets.len(),
        targets.len() - failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
