//! Fuzzing entry points: bytes -> one parser of input an operator or a host controls, run the
//! way deploy runs it, -> an [`Outcome`] saying whether the answer is acceptable.
//!
//! The property tests (`tests/fuzz_props.rs`, fixed seed, in CI) and the `cargo fuzz`
//! targets (`fuzz/fuzz_targets/`, longer runs by hand) call the same [`run`]. What every
//! parser must do with any bytes: end in `Ok` or in an error whose text says what is wrong
//! and, for a file, names that file (and its line, when it has one); never panic, hang or
//! take memory out of proportion to the input. A panic shows itself (the harness catches
//! it); everything else is [`Outcome::problem`]. File parsers read from a private scratch
//! folder, the way deploy reads the operator's repo.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::render::Renderer;
use crate::transport::winrm::{clixml, conn, ntlm, wsman};
use crate::transport::{FileState, RemoteFile, known_hosts, ssh};

/// One parser of outside input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `hosts/inventory.yml` (YAML).
    Inventory,
    /// `hosts/hosts.ini` (Ansible's INI inventory: sections, ranges, typed values).
    IniInventory,
    /// A `group_vars/` or `host_vars/` file, and `-e` arguments.
    VarsFile,
    /// `hosts/deploy.yml`.
    Manifest,
    /// A template file, the same text as an inline template (`dest:`, a handler) and as a
    /// check's `that:` expression.
    Template,
    /// A rendered file as checks parse it (YAML or JSON, else text).
    ChecksFile,
    /// A `secrets/*.yml.age` file, decrypted with the fuzz identity ([`encrypt_secret`]).
    Secrets,
    /// `secrets/recipients.txt`.
    Recipients,
    /// A `known_hosts` file, then a host checked against it.
    KnownHosts,
    /// `state.json` as read from a host.
    StateRecord,
    /// `lock.json` as read from a host.
    Lock,
    /// The SSH read script's output (tree listing; status, link and stat lines; contents).
    SshRead,
    /// An HTTP answer's body judged by `verify:` entries.
    Verify,
    /// A WS-Man answer envelope.
    WsMan,
    /// An HTTP/1.1 answer on the pinned WinRM connection (head and body).
    HttpAnswer,
    /// An NTLM CHALLENGE message, answered with an AUTHENTICATE; an encrypted WinRM body.
    Ntlm,
    /// CLIXML on a PowerShell command's stderr.
    Clixml,
    /// A facts answer: the sh script's sections (SSH, local) and the PowerShell script's JSON
    /// (WinRM).
    Facts,
    /// The WinRM read script's JSON answer (states, sizes, base64 contents, listings).
    WinRmRead,
}

impl Target {
    pub const ALL: [Target; 19] = [
        Target::Inventory,
        Target::IniInventory,
        Target::VarsFile,
        Target::Manifest,
        Target::Template,
        Target::ChecksFile,
        Target::Secrets,
        Target::Recipients,
        Target::KnownHosts,
        Target::StateRecord,
        Target::Lock,
        Target::SshRead,
        Target::Verify,
        Target::WsMan,
        Target::HttpAnswer,
        Target::Ntlm,
        Target::Clixml,
        Target::Facts,
        Target::WinRmRead,
    ];
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a parser made of some bytes.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `Ok`, or the error text an operator would read.
    pub result: Result<(), String>,
    /// Texts an error must contain to be clear (the file's path, `file:line`).
    pub must_name: Vec<String>,
}

/// Longest error text accepted for any input: a message quotes at most an excerpt.
const MAX_MESSAGE: usize = 16 << 10;

impl Outcome {
    fn of<E: fmt::Display>(result: Result<impl Sized, E>) -> Outcome {
        Outcome {
            result: result.map(|_| ()).map_err(|e| e.to_string()),
            must_name: Vec::new(),
        }
    }

    fn naming(mut self, what: impl Into<String>) -> Outcome {
        self.must_name.push(what.into());
        self
    }

    /// Why this answer is not acceptable, if it is not: an empty or unbounded error, or one
    /// that does not name what it must.
    pub fn problem(&self) -> Option<String> {
        let Err(message) = &self.result else {
            return None;
        };
        if message.trim().is_empty() {
            return Some("an empty error message".into());
        }
        if message.len() > MAX_MESSAGE {
            return Some(format!(
                "an error message of {} bytes: {}...",
                message.len(),
                crate::text::prefix(message, 300)
            ));
        }
        self.must_name
            .iter()
            .find(|name| !message.contains(name.as_str()))
            .map(|name| format!("the error does not name {name:?}: {message}"))
    }

    /// Both outcomes, the first problem of either.
    fn and(self, other: Outcome) -> Outcome {
        match (&self.problem(), &other.problem()) {
            (Some(_), _) => self,
            (None, Some(_)) => other,
            (None, None) if self.result.is_err() => self,
            (None, None) => other,
        }
    }
}

/// Runs `target`'s parser on `data`.
pub fn run(target: Target, data: &[u8]) -> Outcome {
    match target {
        Target::Inventory => inventory(data),
        Target::IniInventory => ini_inventory(data),
        Target::VarsFile => vars_file(data),
        Target::Manifest => manifest(data),
        Target::Template => template(data),
        Target::ChecksFile => {
            let _ = crate::checks::parse_file(data);
            Outcome::of(Ok::<(), String>(()))
        }
        Target::Secrets => secrets(data),
        Target::Recipients => recipients(data),
        Target::KnownHosts => known_hosts_file(data),
        Target::StateRecord => state_record(data),
        Target::Lock => lock(data),
        Target::SshRead => ssh_read(data),
        Target::Verify => verify(data),
        Target::WsMan => wsman_answer(data),
        Target::HttpAnswer => http_answer(data),
        Target::Ntlm => ntlm_messages(data),
        Target::Clixml => {
            let _ = clixml::decode_stderr(data);
            Outcome::of(Ok::<(), String>(()))
        }
        Target::Facts => Outcome::of(crate::facts::parse_posix(data))
            .and(Outcome::of(crate::facts::parse_windows(data))),
        Target::WinRmRead => winrm_read(data),
    }
}

thread_local! {
    /// This thread's scratch folder (a repo of its own), made on first use.
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// `rel` under this thread's scratch folder, holding `data` (parents made).
fn scratch_file(rel: &str, data: &[u8]) -> PathBuf {
    let root = SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = tempfile::Builder::new()
                .prefix("deploy-fuzz-")
                .tempdir()
                .ok();
        }
        s.as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_else(std::env::temp_dir)
    });
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&path, data);
    path
}

fn inventory(data: &[u8]) -> Outcome {
    let path = scratch_file("inventory/hosts/inventory.yml", data);
    let dir = path.parent().unwrap_or(Path::new("."));
    let result = crate::inventory::Inventory::load(dir, &crate::inventory::Vars::new());
    if let Ok(inv) = &result {
        // What every run computes next from an inventory.
        let _ = inv.groups_var();
        for host in inv.hosts.values() {
            let _ = host.group_names();
        }
    }
    Outcome::of(result).naming(path.display().to_string())
}

fn ini_inventory(data: &[u8]) -> Outcome {
    let path = scratch_file("ini-inventory/hosts/hosts.ini", data);
    let dir = path.parent().unwrap_or(Path::new("."));
    let result = crate::inventory::Inventory::load(dir, &crate::inventory::Vars::new());
    if let Ok(inv) = &result {
        let _ = inv.groups_var();
    }
    Outcome::of(result).naming(path.display().to_string())
}

fn vars_file(data: &[u8]) -> Outcome {
    let path = scratch_file("vars/group_vars/all.yml", data);
    let file =
        Outcome::of(crate::inventory::load_vars_file(&path)).naming(path.display().to_string());
    // The same text as `-e` arguments, one per line (no `@file`: that reads a file).
    let text = String::from_utf8_lossy(data);
    let args: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('@'))
        .map(str::to_string)
        .collect();
    file.and(Outcome::of(crate::inventory::parse_extra_vars(&args)))
}

fn manifest(data: &[u8]) -> Outcome {
    let path = scratch_file("manifest/hosts/deploy.yml", data);
    let dir = path.parent().unwrap_or(Path::new("."));
    Outcome::of(crate::manifest::Manifest::load(dir)).naming(path.display().to_string())
}

/// Templates beside the fuzzed one, so that includes, imports and macros reach real files.
const TEMPLATE_FRIENDS: [(&str, &str); 2] = [
    (
        "inc.j2",
        "included {{ name }}\n{% for i in items %}{{ i }}{% endfor %}\n",
    ),
    (
        "m.j2",
        "{% macro f(x) %}é{{ x }}€{{ nested.k }}{% endmacro %}\n",
    ),
];

fn template(data: &[u8]) -> Outcome {
    let path = scratch_file("templates/a.j2", data);
    let dir = path.parent().unwrap_or(Path::new("."));
    for (name, text) in TEMPLATE_FRIENDS {
        if !dir.join(name).exists() {
            scratch_file(&format!("templates/{name}"), text.as_bytes());
        }
    }
    // A fresh renderer: a template is cached once loaded.
    let renderer = Renderer::new(dir);
    let vars = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({
        "name": "é€",
        "items": [1, "two", {"three": 3}],
        "nested": {"k": "v", "list": [true, null]},
        "templated": "{{ name }} and {{ items | length }}",
        "looping": "{{ looping }}",
    })));
    let vars = match renderer.resolve_vars(&vars) {
        Ok(v) => v,
        Err(e) => return Outcome::of(Err::<(), _>(e)),
    };
    let text = String::from_utf8_lossy(data);
    let named = |result: Result<String, crate::render::RenderError>| -> Outcome {
        match result {
            Ok(_) => Outcome::of(Ok::<(), String>(())),
            Err(e) => {
                let location = match e.line {
                    Some(line) => format!("{}:{line}", e.template),
                    None => e.template.clone(),
                };
                Outcome::of(Err::<(), _>(e.report())).naming(location)
            }
        }
    };
    let file = named(renderer.render_file("a.j2", &vars));
    let origin = "hosts/deploy.yml: dest of a.j2";
    let inline = named(renderer.render_str(origin, &text, &vars));
    let check = match renderer.eval_expression("check `fuzz`", &text, &vars) {
        Ok(_) => Outcome::of(Ok::<(), String>(())),
        Err(e) => Outcome::of(Err::<(), _>(e.report())).naming(e.template.clone()),
    };
    file.and(inline).and(check)
}

/// The identity the [`Target::Secrets`] parser decrypts with, and its recipients.
struct FuzzIdentity {
    identities: crate::secrets::Identities,
    recipients: crate::secrets::Recipients,
}

thread_local! {
    static IDENTITY: RefCell<Option<std::rc::Rc<FuzzIdentity>>> = const { RefCell::new(None) };
}

fn fuzz_identity() -> Result<std::rc::Rc<FuzzIdentity>, String> {
    if let Some(id) = IDENTITY.with(|i| i.borrow().clone()) {
        return Ok(id);
    }
    let key = crate::secrets::age::X25519Identity::generate();
    let file = scratch_file(
        "identity.txt",
        format!("{}\n", &*key.secret_string()).as_bytes(),
    );
    let identities = crate::secrets::load_identities(&[file]).map_err(|e| e.to_string())?;
    let recipients = crate::secrets::Recipients::parse(
        Path::new("recipients.txt"),
        &key.to_public().to_string(),
    )
    .map_err(|e| e.to_string())?;
    let id = std::rc::Rc::new(FuzzIdentity {
        identities,
        recipients,
    });
    IDENTITY.with(|i| *i.borrow_mut() = Some(id.clone()));
    Ok(id)
}

/// `plaintext` encrypted (armored) to this thread's fuzz identity: a valid secret file to
/// mutate.
pub fn encrypt_secret(plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let id = fuzz_identity()?;
    crate::secrets::encrypt(plaintext, &id.recipients).map_err(|e| e.to_string())
}

fn secrets(data: &[u8]) -> Outcome {
    let id = match fuzz_identity() {
        Ok(id) => id,
        Err(e) => return Outcome::of(Err::<(), _>(e)),
    };
    let path = scratch_file("secrets/all.yml.age", data);
    Outcome::of(crate::secrets::decrypt_file(&path, &id.identities))
        .naming(path.display().to_string())
}

fn recipients(data: &[u8]) -> Outcome {
    let path = Path::new("secrets/recipients.txt");
    let text = String::from_utf8_lossy(data);
    Outcome::of(crate::secrets::Recipients::parse(path, &text)).naming("secrets/recipients.txt")
}

/// A real host key, checked against the fuzzed file.
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpgMDYqsd5iuC7WIv9a82axcLAapLjelIm3nhJ6Kkxv";

fn known_hosts_file(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let known = known_hosts::KnownHosts::parse(Path::new("known_hosts"), &text);
    if let Ok(key) = russh::keys::ssh_key::PublicKey::from_openssh(HOST_KEY) {
        for (host, port) in [("alpha", 22), ("127.0.0.1", 2222), ("é.example", 22)] {
            let _ = known.check(host, port, &key).to_string();
            let _ = known.known_algorithms(host, port);
        }
    }
    Outcome::of(Ok::<(), String>(()))
}

fn present(data: &[u8]) -> RemoteFile {
    RemoteFile::Present(FileState {
        content: data.to_vec(),
        mode: 0o600,
        uid: 0,
        gid: 0,
        owner: None,
        group: None,
    })
}

fn state_record(data: &[u8]) -> Outcome {
    let result = crate::state::HostState::from_remote(&present(data));
    if let Ok(Some(record)) = &result {
        // What plan and status print of a record.
        let _ = crate::state::short_commit(&record.commit);
        let _ = crate::text::prefix(&record.commit, 12);
        for p in &record.pending_handlers {
            let _ = crate::state::short_commit(&p.since);
        }
    }
    Outcome::of(result)
}

fn lock(data: &[u8]) -> Outcome {
    let holder = crate::state::describe_holder(data);
    // The holder is quoted in messages: it must stay short whatever the file holds.
    let result = if holder.len() > 2048 {
        Err(format!("a lock holder of {} bytes", holder.len()))
    } else {
        Ok(())
    };
    Outcome::of(result)
}

fn ssh_read(data: &[u8]) -> Outcome {
    let paths: Vec<String> = ["/etc/a", "/etc/b", "/var/lib/deploy/state.json"]
        .iter()
        .map(|p| p.to_string())
        .collect();
    // Small limits, so that arbitrary sizes cross them.
    let limits = crate::transport::ReadLimits {
        file: 4096,
        host: 8192,
    };
    let files = Outcome::of(ssh::parse_read_output(&paths, data, &limits));
    // The same bytes as a listing of trees (and the files part after it).
    let trees = vec!["/srv/www".to_string(), "/srv/www/img".to_string()];
    let listed = ssh::parse_list_output(&trees, data)
        .and_then(|(_, rest)| ssh::parse_read_output(&paths, rest, &limits).map(|_| ()));
    files.and(Outcome::of(listed))
}

fn winrm_read(data: &[u8]) -> Outcome {
    let paths: Vec<String> = [r"C:\a", r"C:\ProgramData\deploy\state.json"]
        .iter()
        .map(|p| p.to_string())
        .collect();
    let limits = crate::transport::ReadLimits {
        file: 4096,
        host: 8192,
    };
    Outcome::of(crate::transport::winrm::parse_read_answer(
        &paths, 1, data, &limits,
    ))
}

fn verify(data: &[u8]) -> Outcome {
    let body = String::from_utf8_lossy(data).into_owned();
    let response = crate::transport::http::HttpResponse { status: 200, body };
    let entry = |json_path: Option<&str>, contains: Option<&str>| crate::desired::DesiredVerify {
        name: "fuzz".into(),
        url: "http://127.0.0.1:9/v1/models".into(),
        status: 200,
        json_path: json_path.map(str::to_string),
        contains: contains.map(str::to_string),
        timeout_secs: 1.0,
    };
    let mut outcome = Outcome::of(Ok::<(), String>(()));
    for v in [
        entry(Some("data[*].id"), Some("é")),
        entry(Some("a.b[0]"), None),
        entry(None, Some("ok")),
    ] {
        // A failed verify is an answer, not a parser error: its text must stay bounded.
        if let Err(why) = crate::verify::judge(&v, &response)
            && why.len() > MAX_MESSAGE
        {
            outcome = Outcome::of(Err::<(), _>(why));
        }
    }
    outcome
}

fn wsman_answer(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let result = wsman::parse_answer(&text).map(|body| {
        let _ = wsman::shell_id(&body);
        let _ = wsman::command_id(&body);
        let _ = wsman::received(&body);
        let _ = wsman::max_envelope_size(&body);
    });
    Outcome::of(result)
}

fn http_answer(data: &[u8]) -> Outcome {
    let mut reader = std::io::BufReader::new(data);
    let result = conn::read_response(&mut reader).and_then(|(response, _)| {
        // A WinRM answer's body is then an envelope, sealed under NTLM.
        if response.body.len() > data.len() {
            return Err(format!(
                "a body of {} bytes from {} bytes of answer",
                response.body.len(),
                data.len()
            )
            .into());
        }
        Ok(())
    });
    Outcome::of(result)
}

fn ntlm_messages(data: &[u8]) -> Outcome {
    let random = ntlm::Randomness {
        client_challenge: [7; 8],
        session_key: [9; 16],
        filetime: 1,
    };
    let negotiate = ntlm::negotiate_message();
    let challenge = Outcome::of(ntlm::Challenge::parse(data));
    let auth = Outcome::of(ntlm::authenticate(
        &negotiate,
        data,
        "DOMAIN\\user",
        "password",
        Some(b"tls-server-end-point:fuzz"),
        &random,
    ));
    let unwrapped = Outcome::of(ntlm::unwrap_winrm(
        &mut ntlm::Sealer::client(&[3; 16]),
        data,
    ));
    challenge.and(auth).and(unwrapped)
}
