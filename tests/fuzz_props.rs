//! No panic, whatever the input: property tests over every parser of input an operator or a
//! host controls ([`deploy::fuzz`], the same entry points the `cargo fuzz` targets use).
//!
//! Each parser gets arbitrary bytes, a soup of tokens its format is made of (with multi-byte
//! characters, tabs, CRLF and brackets among them), and mutations (flip, insert, delete,
//! truncate, repeat) of valid inputs taken from the repo and the test fixtures. Every case
//! must end in `Ok` or in a clear error (naming the file and line where there is one, see
//! `Outcome::problem`) within a time bound; a panic fails the case and proptest shrinks it.
//! Deeply nested inputs are tried on a 2 MiB stack, the size of the threads deploy parses
//! on. The seed is fixed, so a run is the same run everywhere; budget: about a minute in a
//! debug build.

use std::path::Path;
use std::time::{Duration, Instant};

use deploy::fuzz::{Target, run};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

const SEED: [u8; 32] = *b"deploy: no panic, whatever input";

/// Longest one case may take, debug build, a loaded machine (the slowest parser, decrypting
/// a secret file, takes milliseconds).
const CASE_LIMIT: Duration = Duration::from_secs(5);

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file directly in `rel` (sorted), or in its subfolders when `nested`.
fn files_under(rel: &str, nested: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(repo(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .map(|p| if nested.is_empty() { p } else { p.join(nested) })
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("fixture"))
        .collect()
}

/// Tokens every text format here is sensitive to.
const COMMON: &[&str] = &[
    "é",
    "€",
    "𝄞",
    "\u{200b}",
    "\t",
    "\r\n",
    "\n",
    "\r",
    "\0",
    " ",
    "  ",
    "[",
    "]",
    "{",
    "}",
    "<",
    ">",
    "\"",
    "'",
    ":",
    ",",
    "-",
    "#",
    "&",
    "\\",
    "%",
    "0",
    "-1",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775807",
    "4294967295",
];

fn tokens(target: Target) -> &'static [&'static str] {
    match target {
        Target::IniInventory => &[
            "[web]",
            "[web:vars]",
            "[web:children]",
            "host[01:10]",
            "db-[a:c]:22",
            "x=1",
            "y='a b'",
            "z=[1, {'a': None}]",
            "# c",
            "; c",
            "\n",
            "=",
            "[",
            "]",
            ":",
            "\"",
        ],
        Target::Inventory | Target::VarsFile | Target::Manifest | Target::ChecksFile => &[
            "all:",
            "hosts:",
            "children:",
            "vars:",
            "groups:",
            "files:",
            "handlers:",
            "checks:",
            "- template: a.j2",
            "dest: /etc/a",
            "notify: h",
            "mode: 0644",
            "&a",
            "*a",
            "<<: *a",
            "!!str",
            "? ",
            "|",
            ">-",
            "---",
            "...",
            "~",
            "null",
            "yes",
            "key=value",
            "{\"a\": [1]}",
            "newline: crlf",
        ],
        Target::Template => &[
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            "{%-",
            "-%}",
            "name",
            "items",
            "nested.k",
            "templated",
            "looping",
            "undefined",
            "|",
            "| default('x')",
            "| to_nice_yaml",
            "| from_yaml",
            "| mandatory",
            "| b64decode",
            "for i in items",
            "endfor",
            "if",
            "endif",
            "include 'inc.j2'",
            "from 'm.j2' import f",
            "f(1)",
            "macro",
            "set x =",
            "raw",
            "endraw",
            "(",
            ")",
            "~",
            "1 € 1",
        ],
        Target::Secrets | Target::Recipients => &[
            "-----BEGIN AGE ENCRYPTED FILE-----",
            "-----END AGE ENCRYPTED FILE-----",
            "age-encryption.org/v1",
            "-> X25519 ",
            "---",
            "age1",
            "ssh-ed25519 ",
            "ssh-rsa ",
            "AGE-SECRET-KEY-1",
            "AAAA",
            "=",
        ],
        Target::KnownHosts => &[
            "alpha",
            "[127.0.0.1]:2222",
            "|1|",
            "@revoked",
            "@cert-authority",
            "*",
            "?",
            "!",
            "ssh-ed25519",
            "ssh-rsa",
            "AAAAC3NzaC1lZDI1NTE5AAAAIBpgMDYqsd5iuC7WIv9a82axcLAapLjelIm3nhJ6Kkxv",
        ],
        Target::StateRecord | Target::Lock | Target::Verify => &[
            "{\"version\":1,",
            "\"commit\":",
            "\"files\":{",
            "\"pending_handlers\":[",
            "\"run_id\":",
            "\"pid\":",
            "\"started_unix\":",
            "\"data\":[{\"id\":\"é\"}]",
            "\"a\":{\"b\":[",
            "null",
            "true",
            "1e400",
            "\"\\ud800\"",
        ],
        Target::Facts => &[
            "deploy-facts 1",
            "\n\x1euname\nLinux\nvm\n6.1\n#1 SMP\nx86_64\n",
            "\n\x1eend\n",
            "\n\x1ecpuinfo\n",
            "processor\t: 0\n",
            "physical id\t: 0\n",
            "core id\t: 0\n",
            "cpu cores\t: 18446744073709551615\n",
            "siblings\t: 8\n",
            "\n\x1eaffinity\nCpus_allowed_list:\t0-18446744073709551615\n",
            "\n\x1edate\n1796127098 410482000|2026|12|Tuesday|2|48|01|12|11|38|UTC|+0000\n",
            "\n\x1eroute\n8.8.8.8 via 10.0.0.1 dev eth0 src 10.0.0.5 uid 0\n",
            "\n\x1edev eth0\naddress=02:00:00:00:00:01\nmtu=1500\ntype=1\n",
            "\n\x1eprimary eth0\n    inet 10.0.0.5/33 brd 10.0.0.255 scope global eth0\n",
            "\n\x1efile /etc/os-release\nID=debian\nVERSION_ID=\"12\"\n",
            "\n\x1ememinfo\nMemTotal: 1024 kB\n",
            "{\"hostname\":\"W\",\"env\":{},\"date_time\":{}}",
            "\"ip_addresses\":[1]",
        ],
        Target::SshRead => &[
            "F\n",
            "M\n",
            "U\n",
            "O a directory\n",
            "3 644 0 0 root root\n",
            "18446744073709551615 644 0 0 r r\n",
            "9223372036854775807 644 0 0 r r\n",
            "UNKNOWN",
            "abc",
            "F\nF\nF\n",
            "P 1\n",
            "P 99\n",
            "L /etc/shadow\n",
            "d 4096 /srv/www\0",
            "f 3 /srv/www/a\0",
            "l 7 /srv/www/l\0/x\0",
            "=0\0=\0",
            "=0\0",
        ],
        Target::WinRmRead => &[
            "{\"files\":[",
            "\"trees\":[",
            "{\"path\":\"C:\\\\a\",",
            "\"state\":\"file\",",
            "\"state\":\"toobig\",",
            "\"state\":\"skipped\",",
            "\"state\":\"link\",",
            "\"size\":18446744073709551615",
            "\"content\":\"YWJj\"",
            "\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"",
            "\"entries\":[",
            "\"kind\":\"file\"",
            "]}",
            "null",
        ],
        Target::WsMan | Target::Clixml => &[
            "<s:Envelope>",
            "</s:Envelope>",
            "<s:Body>",
            "</s:Body>",
            "<s:Fault>",
            "<rsp:ReceiveResponse>",
            "<rsp:Stream Name=\"stderr\">",
            "</rsp:Stream>",
            "<w:MaxEnvelopeSizekb>",
            "99999999999999999999",
            "<![CDATA[",
            "]]>",
            "&amp;",
            "&#x0;",
            "&bogus;",
            "<?xml version=\"1.0\"?>",
            "<!DOCTYPE a [<!ENTITY e \"x\">]>",
            "#< CLIXML",
            "<Objs>",
            "</Objs>",
            "<S S=\"Error\">",
            "</S>",
            "_x000D_",
            "_xD83D_",
            "_x",
            "xmlns:a=\"u\"",
        ],
        Target::HttpAnswer => &[
            "HTTP/1.1 200 OK\r\n",
            "HTTP/1.1 401 Unauthorized\r\n",
            "Content-Length: 5\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Transfer-Encoding: chunked\r\n",
            "ffffffffffffffff\r\n",
            "5\r\nhello\r\n",
            "0\r\n\r\n",
            "Connection: close\r\n",
            "\r\n\r\n",
        ],
        Target::Ntlm => &[
            "NTLMSSP\0",
            "\x02\0\0\0",
            "\x03\0\0\0",
            "\u{ff}\u{ff}",
            "Length=",
            "Length=18446744073709551615\r\n",
            "application/octet-stream",
            "--Encrypted Boundary",
            "\x10\0\0\0",
        ],
    }
}

/// Valid inputs to mutate.
fn seeds(target: Target) -> Vec<Vec<u8>> {
    let text = |s: &str| s.as_bytes().to_vec();
    match target {
        Target::IniInventory => vec![
            text(
                "# the seeds' layout\n[litellm]\nmotoko ansible_host=motoko ansible_user=mdt\n\n[vllm]\nwin[01:03] ansible_port=5986 gpu=True\ndb-[a:c]:2222\n\n[vllm:vars]\nansible_connection=winrm\nworkers = 4\n\n[gpu:children]\nvllm\n[gpu]\n",
            ),
            text("ungrouped1 x=\"a b\" y=[1, 'two'] z={'k': None}\n[g]\nh ; comment\n"),
        ],
        Target::Inventory => vec![
            read("hosts/inventory.yml"),
            text(
                "all:\n  vars:\n    ansible_connection: local\n  children:\n    web:\n      hosts:\n        alpha:\n          deploy_root: roots/alpha\n        beta: {}\n    db:\n      children:\n        web:\n",
            ),
        ],
        Target::VarsFile => {
            let mut s = files_under("hosts/group_vars", "");
            s.extend(files_under("hosts/host_vars", ""));
            s.push(text(
                "base: &b {a: 1, b: [x, y]}\nderived:\n  <<: *b\n  c: \"{{ a }}\"\n",
            ));
            s
        }
        Target::Manifest => vec![
            read("hosts/deploy.yml"),
            text(
                "checks:\n  - name: c\n    that: files['/etc/a'].x == 1\ngroups:\n  all:\n    files:\n      - template: a.j2\n        dest: /etc/a\n        notify: h\n    handlers:\n      - name: h\n        run: systemctl restart a\n",
            ),
        ],
        Target::Template => {
            let mut s = files_under("templates", "");
            s.extend(files_under("tests/fixtures/render", "template.j2"));
            s.push(text("{% from 'm.j2' import f %}{{ f(name) }}\n{% include 'inc.j2' %}\n{{ templated }}\n"));
            s
        }
        Target::ChecksFile => {
            let mut s = files_under("tests/fixtures/render", "expected.out");
            s.push(text("{\"model_list\": [{\"model_name\": \"é\"}]}"));
            s
        }
        Target::Secrets => ["db_password: hunter2\n", "a: [1, {b: é}]\n", ""]
            .iter()
            .map(|p| deploy::fuzz::encrypt_secret(p.as_bytes()).expect("encrypt"))
            .collect(),
        Target::Recipients => vec![read("secrets/recipients.txt")],
        Target::KnownHosts => vec![text(
            "alpha,10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpgMDYqsd5iuC7WIv9a82axcLAapLjelIm3nhJ6Kkxv\n\
             [127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq6UF4QU5lqUjH6meQ+o388Kv/Kn9URNdguzPDMaAnK\n\
             @revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq6UF4QU5lqUjH6meQ+o388Kv/Kn9URNdguzPDMaAnK\n\
             |1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpgMDYqsd5iuC7WIv9a82axcLAapLjelIm3nhJ6Kkxv\n\
             *.example,!bad.example ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAiF4L57AY0Zp/0TpFcTRP/4Ccgh4WChUcj4z/7KeC0JrC9KPPgw75l4Ze5CyghDZwUp+hsCbAAuEPyW1u+hVak=\n",
        )],
        Target::StateRecord => vec![text(
            r#"{"version":1,"commit":"0123456789abcdef0123456789abcdef01234567-dirty","time":"2025-01-01T00:00:00Z","by":"op@ctl","files":{"/etc/a":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},"pending_handlers":[{"name":"restart a","since":"0123456789abcdef"}]}"#,
        )],
        Target::Lock => vec![text(
            r#"{"run_id":"1a2b","user":"op","controller":"ctl","pid":42,"started":"2025-01-01T00:00:00Z","started_unix":1735689600}"#,
        )],
        Target::Facts => {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(deploy::facts::SH_SCRIPT)
                .output()
                .expect("sh");
            vec![
                out.stdout,
                text(
                    r#"{"hostname":"WINTERMUTE","fqdn":"W.lab","processor_cores":8,"ip_addresses":"10.0.0.7","env":{"A":"b"},"date_time":{"epoch_int":1,"tz":"UTC"}}"#,
                ),
            ]
        }
        Target::SshRead => vec![
            text("F\nM\nF\n3 644 0 0 root root\n2 600 1 1 u g\nabcxy"),
            text("U\nO a directory\nF\n0 644 0 0 UNKNOWN UNKNOWN\n"),
        ],
        Target::Verify => vec![
            text(r#"{"object":"list","data":[{"id":"é","object":"model"},{"id":"b"}]}"#),
            text(r#"{"a":{"b":["ok",1,true,null]}}"#),
        ],
        Target::WsMan => {
            let mut s = Vec::new();
            for file in files_under("tests/fixtures/winrm/pypsrp", "") {
                for line in String::from_utf8_lossy(&file).lines() {
                    if let Some(xml) = line.trim_start().strip_prefix("response: ") {
                        s.push(xml.as_bytes().to_vec());
                    }
                }
            }
            s.extend(
                files_under("tests/fixtures/winrm/winrb", "")
                    .into_iter()
                    .filter(|f| f.starts_with(b"<")),
            );
            assert!(s.len() > 20, "WS-Man answers found: {}", s.len());
            s
        }
        Target::HttpAnswer => vec![
            text(
                "HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: 5\r\n\r\nhello",
            ),
            text(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\né!\r\n0\r\nTrailer: t\r\n\r\n",
            ),
            text("HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n<s:Envelope/>"),
        ],
        Target::Ntlm => {
            let challenge = unhex(CHALLENGE_4_2_4_3);
            let mut sealed = deploy::transport::winrm::ntlm::wrap_winrm(
                &mut deploy::transport::winrm::ntlm::Sealer::client(&[3; 16]),
                "<s:Envelope>é</s:Envelope>".as_bytes(),
            );
            sealed.truncate(sealed.len().min(4096));
            vec![challenge, sealed]
        }
        Target::Clixml => vec![text(CLIXML)],
        Target::WinRmRead => vec![
            text(
                r#"{"files":[{"path":"C:\\a","state":"file","sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","content":"YWJj"},{"path":"C:\\ProgramData\\deploy\\state.json","state":"missing"}],"trees":{"entries":[{"rel":"","kind":"dir"},{"rel":"x","kind":"file","size":3,"sha256":"00"}]}}"#,
            ),
            text(
                r#"{"files":[{"path":"C:\\a","state":"toobig","size":10737418240},{"path":"C:\\ProgramData\\deploy\\state.json","state":"link","target":"C:\\x"}],"trees":[{"error":"denied"}]}"#,
            ),
        ],
    }
}

/// The CHALLENGE message of MS-NLMP 4.2.4.3.
const CHALLENGE_4_2_4_3: &str = "4e544c4d53535000020000000c000c003800000033828ae20123456789abcdef00000000000000002400240044000000060070170000000f53006500720076006500720002000c0044006f006d00610069006e0001000c005300650072007600650072000000000000000000";

const CLIXML: &str = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\"><AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj><S S=\"Error\">Start-VLLM.ps1 not found_x000D__x000A_</S><S S=\"Error\">é _xD83D__xDE00__x000D__x000A_</S></Objs>";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One edit of a valid input; positions and indexes are taken modulo what they index.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
    Truncate(usize),
    Repeat(usize, usize, usize),
    /// The run of digits at or after a position becomes one of [`NUMBERS`].
    Number(usize, usize),
}

/// Numbers at the edges of the integer types sizes and lengths are read into.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "1e400",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Edit::Flip(p, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, t)| Edit::Insert(p, t)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1usize..32, 2usize..64).prop_map(|(p, n, k)| Edit::Repeat(p, n, k)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, n)| Edit::Number(p, n)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit], dict: &[&str]) -> Vec<u8> {
    for e in edits {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        match *e {
            Edit::Flip(p, bit) if !data.is_empty() => {
                let i = p % data.len();
                data[i] ^= 1 << bit;
            }
            Edit::Flip(..) => {}
            Edit::Insert(p, t) => {
                let i = at(p, data.len());
                let token = dict[t % dict.len()].as_bytes();
                data.splice(i..i, token.iter().copied());
            }
            Edit::Delete(p, n) => {
                let i = at(p, data.len());
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
            Edit::Truncate(p) => data.truncate(at(p, data.len())),
            Edit::Repeat(p, n, k) => {
                let i = at(p, data.len());
                let end = (i + n).min(data.len());
                let piece = data[i..end].to_vec();
                for _ in 1..k {
                    data.splice(end..end, piece.iter().copied());
                }
            }
            Edit::Number(p, n) => {
                let from = at(p, data.len());
                let Some(start) = data[from..].iter().position(u8::is_ascii_digit) else {
                    continue;
                };
                let start = from + start;
                let end = data[start..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(data.len(), |e| start + e);
                let number = NUMBERS[n % NUMBERS.len()].as_bytes();
                data.splice(start..end, number.iter().copied());
            }
        }
    }
    data
}

/// Arbitrary bytes, a token soup, and mutations of the seeds.
fn inputs(target: Target) -> BoxedStrategy<Vec<u8>> {
    let dict: Vec<&'static str> = tokens(target).iter().chain(COMMON).copied().collect();
    let seeds = seeds(target);
    let soup_dict = dict.clone();
    let soup = vec(0..soup_dict.len(), 0..80).prop_map(move |ix| {
        ix.iter()
            .map(|&i| soup_dict[i])
            .collect::<String>()
            .into_bytes()
    });
    let mutated = (0..seeds.len(), vec(edit(), 1..12))
        .prop_map(move |(s, edits)| apply(seeds[s].clone(), &edits, &dict));
    prop_oneof![
        1 => vec(any::<u8>(), 0..400),
        1 => any::<String>().prop_map(String::into_bytes),
        3 => soup,
        5 => mutated,
    ]
    .boxed()
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED))
}

/// Runs `cases` inputs through `target`'s parser; panics with the shrunk input on the first
/// panic, slow case or unclear error.
fn no_panic(target: Target, cases: u32) {
    let started = Instant::now();
    let result = runner(cases).run(&inputs(target), |data| {
        let start = Instant::now();
        let outcome = run(target, &data);
        let took = start.elapsed();
        if took > CASE_LIMIT {
            return Err(TestCaseError::fail(format!("took {took:?}")));
        }
        if let Some(problem) = outcome.problem() {
            return Err(TestCaseError::fail(problem));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
    eprintln!("{target}: {cases} cases in {:?}", started.elapsed());
}

#[test]
fn inventory() {
    no_panic(Target::Inventory, 5000);
}

#[test]
fn ini_inventory() {
    no_panic(Target::IniInventory, 5000);
}

#[test]
fn vars_files_and_extra_vars() {
    no_panic(Target::VarsFile, 5000);
}

#[test]
fn deploy_yml() {
    no_panic(Target::Manifest, 5000);
}

#[test]
fn templates() {
    no_panic(Target::Template, 10000);
}

#[test]
fn rendered_files_as_checks_read_them() {
    no_panic(Target::ChecksFile, 5000);
}

#[test]
fn secret_files() {
    no_panic(Target::Secrets, 4000);
}

#[test]
fn recipients_txt() {
    no_panic(Target::Recipients, 10000);
}

#[test]
fn known_hosts() {
    no_panic(Target::KnownHosts, 8000);
}

#[test]
fn state_record_from_a_host() {
    no_panic(Target::StateRecord, 20000);
}

#[test]
fn lock_from_a_host() {
    no_panic(Target::Lock, 20000);
}

#[test]
fn ssh_read_output() {
    no_panic(Target::SshRead, 20000);
}

#[test]
fn facts_answers() {
    no_panic(Target::Facts, 15000);
}

#[test]
fn winrm_read_answers() {
    no_panic(Target::WinRmRead, 10000);
}

#[test]
fn verify_answers() {
    no_panic(Target::Verify, 10000);
}

#[test]
fn wsman_answers() {
    no_panic(Target::WsMan, 15000);
}

#[test]
fn http_answers_on_the_winrm_connection() {
    no_panic(Target::HttpAnswer, 20000);
}

#[test]
fn ntlm_challenge_and_sealed_bodies() {
    no_panic(Target::Ntlm, 15000);
}

#[test]
fn clixml() {
    no_panic(Target::Clixml, 15000);
}

/// Inputs nested thousands deep, for `target`.
fn deep(target: Target) -> Vec<Vec<u8>> {
    let n = 20_000;
    let rep = |open: &str, close: &str| format!("{}{}", open.repeat(n), close.repeat(n));
    let texts: Vec<String> = match target {
        Target::Inventory | Target::VarsFile | Target::Manifest | Target::ChecksFile => vec![
            format!("all: {}", rep("[", "]")),
            format!("all: {}", rep("{a: ", "}")),
            // Block sequences 4000 deep by indentation, twice: the depth is what is tested
            // (20 000 lines were 40 MB of spaces, seconds of parsing under load).
            (0..8_000)
                .map(|i| format!("{}- \n", " ".repeat(i % 4000)))
                .collect(),
            format!("a: &a {}\nb: *a\n", rep("[", "]")),
        ],
        Target::Template => vec![
            format!("{{{{ {} }}}}", rep("[", "]")),
            format!("{{{{ {} }}}}", rep("(", ")")),
            format!("{{{{ {}1 }}}}", "-".repeat(n)),
            rep("{% if true %}", "{% endif %}"),
            format!("{{{{ {} }}}}", rep("{'a': ", "}")),
        ],
        Target::StateRecord | Target::Lock | Target::Verify => {
            vec![rep("[", "]"), rep("{\"a\":", "}")]
        }
        Target::WinRmRead => vec![
            rep("[", "]"),
            format!("{{\"files\":{},\"trees\":[]}}", rep("[", "]")),
        ],
        Target::WsMan | Target::Clixml => vec![
            rep("<a>", "</a>"),
            format!(
                "<s:Envelope><s:Body>{}</s:Body></s:Envelope>",
                rep("<a>", "</a>")
            ),
            format!("#< CLIXML\r\n<Objs>{}</Objs>", rep("<Obj>", "</Obj>")),
        ],
        _ => vec![rep("[", "]")],
    };
    texts.into_iter().map(String::into_bytes).collect()
}

#[test]
fn deeply_nested_inputs_do_not_overflow_the_stack() {
    for target in Target::ALL {
        for (i, input) in deep(target).into_iter().enumerate() {
            eprintln!("deep: {target} #{i}");
            let started = Instant::now();
            // The size of tokio's and deploy's worker threads.
            let outcome = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || run(target, &input))
                .expect("thread")
                .join()
                .unwrap_or_else(|_| panic!("{target}: panicked on deeply nested input"));
            assert!(
                started.elapsed() < CASE_LIMIT,
                "{target}: deeply nested input took {:?}",
                started.elapsed()
            );
            assert_eq!(outcome.problem(), None, "{target}");
        }
    }
}

/// The properties can fail: an input known to break each rule is caught.
#[test]
fn the_checks_catch_what_they_look_for() {
    // An error that does not name its file.
    let unclear = deploy::fuzz::Outcome {
        result: Err("something is wrong".into()),
        must_name: vec!["hosts/inventory.yml".into()],
    };
    assert!(unclear.problem().is_some());
    // The inventory parser names its file on bad YAML.
    let outcome = run(Target::Inventory, b"all: [\n");
    assert!(outcome.result.is_err());
    assert_eq!(outcome.problem(), None);
    // A mutation changes a seed.
    let seed = b"abc".to_vec();
    assert_eq!(apply(seed.clone(), &[Edit::Truncate(1)], &["x"]), b"a");
    assert_eq!(
        apply(seed, &[Edit::Insert(3, 0)], &["é"]),
        "abcé".as_bytes()
    );
    let length = b"Content-Length: 5\r\n".to_vec();
    assert_eq!(
        apply(length, &[Edit::Number(0, 11)], &["x"]),
        b"Content-Length: 18446744073709551615\r\n"
    );
}

/// Inputs that broke a parser once (found by these tests or by reading the code), each with
/// what it must give now.
#[test]
fn inputs_that_once_panicked() {
    let clear = |target: Target, input: &[u8]| {
        let outcome = run(target, input);
        assert_eq!(outcome.problem(), None, "{target}");
        outcome.result
    };
    // minijinja's span ends one byte into `€`; the excerpt renderer sliced there.
    let err = clear(Target::Template, "{{ 1 € }}".as_bytes()).unwrap_err();
    assert!(
        err.contains("unexpected character") && err.contains("a.j2:1"),
        "{err}"
    );
    // A stat size near usize::MAX: adding the sizes overflowed. Now it is checked against
    // the file limit before any arithmetic: that file is over it, the other one is read.
    let huge: &[u8] = b"F\nF\nM\n18446744073709551615 644 0 0 r r\n1 644 0 0 r r\nx";
    // (As a listing, the same bytes are an error; either way a clear one.)
    let _ = clear(Target::SshRead, huge);
    let paths: Vec<String> = ["/a", "/b", "/c"].iter().map(|p| p.to_string()).collect();
    let (files, _) = deploy::transport::ssh::parse_read_output(
        &paths,
        huge,
        &deploy::transport::ReadLimits::default(),
    )
    .expect("read");
    assert!(
        matches!(&files[0], deploy::transport::RemoteFile::Unusable(why) if why.contains("18446744073709551615 bytes")),
        "{files:?}"
    );
    assert!(
        matches!(&files[1], deploy::transport::RemoteFile::Present(f) if f.content == b"x"),
        "{files:?}"
    );
    // An OriginalContent length near usize::MAX: the end of the sealed message overflowed.
    let mut sealed =
        b"Length=18446744073709551615\r\n\tContent-Type: application/octet-stream\r\n".to_vec();
    sealed.extend_from_slice(&[16, 0, 0, 0]);
    sealed.extend_from_slice(&[0; 40]);
    let err = clear(Target::Ntlm, &sealed).unwrap_err();
    assert!(err.contains("malformed"), "{err}");
    // A MaxEnvelopeSizekb whose bytes do not fit in a usize.
    clear(
        Target::WsMan,
        b"<s:Envelope><s:Body><cfg:MaxEnvelopeSizekb>18446744073709551615</cfg:MaxEnvelopeSizekb></s:Body></s:Envelope>",
    )
    .expect("a config answer");
    // A chunk size near usize::MAX after a first chunk: the size check overflowed.
    let err = clear(
        Target::HttpAnswer,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nffffffffffffffff\r\n",
    )
    .unwrap_err();
    assert!(err.contains("too large"), "{err}");
    // A head, or a chunk-size line, that never ends: once read whole into memory.
    let mut endless = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    endless.resize(8 << 20, b'a');
    let err = clear(Target::HttpAnswer, &endless).unwrap_err();
    assert!(err.contains("head is too long"), "{err}");
    let mut endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    endless.resize(8 << 20, b'0');
    let err = clear(Target::HttpAnswer, &endless).unwrap_err();
    assert!(err.contains("chunk line is too long"), "{err}");
    // Thousands of unary minus in one tag: minijinja recursed without a limit.
    let deep = format!("{{{{ {}1 }}}}", "-".repeat(20_000));
    let err = clear(Target::Template, deep.as_bytes()).unwrap_err();
    assert!(
        err.contains("more than 1000 operators") && err.contains("a.j2:1"),
        "{err}"
    );
}

/// Every entry has its cargo-fuzz target (`fuzz/fuzz_targets/`), declared in
/// `fuzz/Cargo.toml`, so the long runs cover what the property tests cover.
#[test]
fn every_entry_has_a_cargo_fuzz_target() {
    let manifest = String::from_utf8(read("fuzz/Cargo.toml")).expect("utf8");
    let sources: Vec<(String, String)> = std::fs::read_dir(repo("fuzz/fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).expect("target");
            (name, text)
        })
        .collect();
    for target in Target::ALL {
        let call = format!("run(Target::{target}, data)");
        let (file, _) = sources
            .iter()
            .find(|(_, text)| text.contains(&call))
            .unwrap_or_else(|| panic!("no fuzz target calls {call}"));
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{file}\"")),
            "fuzz/Cargo.toml does not declare {file}"
        );
    }
}
