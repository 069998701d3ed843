//! The commands the docs show are run, so the docs cannot drift from the binary.
//!
//! Every fenced block whose info string is `sh run` (runs in a copy of `examples/lab`) or
//! `sh run EXAMPLE` (a copy of `examples/EXAMPLE`) in `README.md` and `docs/*.md` is run by
//! `bash -e` in a fresh copy of that example, with `deploy` on `PATH` being the binary under
//! test. A line whose comment starts `# exits N` must exit with N (any other, 0). A ```` ```text output ````
//! block right after a run block holds lines that the run's output must contain, in order
//! (colours off; blank lines ignored).

use std::path::{Path, PathBuf};
use std::process::Command;

struct Block {
    doc: String,
    /// 1-based line of the opening fence.
    line: usize,
    example: String,
    script: String,
    /// The `text output` block after it, if any.
    expected: Option<String>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn docs() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// The fenced blocks of `text`: (info string, 1-based line of the fence, body).
fn fences(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some((info.trim().to_string(), i + 1, String::new()));
                }
            }
            Some((_, _, body)) => {
                if line.trim_end() == "```" {
                    out.extend(open.take());
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    out
}

fn blocks() -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for path in docs() {
        let text = std::fs::read_to_string(&path).expect("doc");
        let doc = path
            .strip_prefix(repo())
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut last_run: Option<usize> = None;
        for (info, line, body) in fences(&text) {
            let words: Vec<&str> = info.split_whitespace().collect();
            match words.as_slice() {
                ["sh", "run", rest @ ..] => {
                    blocks.push(Block {
                        doc: doc.clone(),
                        line,
                        example: rest.first().unwrap_or(&"lab").to_string(),
                        script: body,
                        expected: None,
                    });
                    last_run = Some(blocks.len() - 1);
                }
                ["text", "output"] => {
                    let i = last_run.take().unwrap_or_else(|| {
                        panic!("{doc}:{line}: `text output` after no run block")
                    });
                    blocks[i].expected = Some(body);
                }
                _ => last_run = None,
            }
        }
    }
    blocks
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("example") {
        let entry = entry.expect("entry");
        if entry.file_name() == ".hosts" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The block as a bash script: each `# exits N` line checked for its status.
fn script(block: &Block) -> String {
    let mut s = String::from("set -e\n");
    for (i, line) in block.script.lines().enumerate() {
        let expected = line.rsplit_once("# exits ").and_then(|(command, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<i32>().ok().map(|code| (command, code))
        });
        match expected {
            Some((command, code)) => {
                let at = block.line + 1 + i;
                s.push_str(&format!(
                    "set +e\n{command}\nrc=$?\nset -e\nif [ $rc -ne {code} ]; then echo \"line {at}: exit $rc, expected {code}\" >&2; exit 1; fi\n"
                ));
            }
            _ => {
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    s
}

#[test]
fn every_command_the_docs_show_runs() {
    let blocks = blocks();
    assert!(
        blocks.len() >= 8,
        "expected the docs' runnable blocks, found {}",
        blocks.len()
    );
    let bin = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_deploy"), bin.path().join("deploy"))
        .expect("link");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    for block in &blocks {
        let work = tempfile::tempdir().expect("tmp");
        let example = repo().join("examples").join(&block.example);
        assert!(
            example.is_dir(),
            "{}:{}: no example {}",
            block.doc,
            block.line,
            block.example
        );
        copy_dir(&example, work.path());
        let out = Command::new("bash")
            .arg("-c")
            .arg(script(block))
            .current_dir(work.path())
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env("HOME", work.path())
            .env_remove("DEPLOY_AGE_IDENTITY")
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            failures.push(format!(
                "{}:{}: {}\n{stdout}{stderr}",
                block.doc, block.line, out.status
            ));
            continue;
        }
        if let Some(expected) = &block.expected {
            let all = format!("{stdout}{stderr}");
            let mut rest = all.as_str();
            for want in expected.lines().filter(|l| !l.trim().is_empty()) {
                match rest.find(want) {
                    Some(at) => rest = &rest[at + want.len()..],
                    None => {
                        failures.push(format!(
                            "{}:{}: the output lacks (in order) {want:?}:\n{all}",
                            block.doc, block.line
                        ));
                        break;
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
