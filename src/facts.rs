//! Facts: what Ansible's `setup` module reports about a host, for the templates that use
//! `ansible_facts` or the `ansible_*` fact variables.
//!
//! Which hosts need them is found statically ([`References`]: the templates a host gets,
//! their includes, its dests, handlers, verify entries and its variables' texts), unless a
//! group's `gather_facts:` says otherwise. Those hosts are asked once, read-only, before
//! rendering: a POSIX sh script ([`SH_SCRIPT`]) over SSH or on the controller, a PowerShell
//! script ([`PS_SCRIPT`]) over WinRM. The host only prints raw material (uname, os-release,
//! /proc/cpuinfo, `ip` output, ...); the values are derived here, on the controller, the way
//! ansible-core 2.19's fact collectors derive them (`module_utils/facts/`). An answer is
//! host input: bounded ([`MAX_ANSWER`]) and parsed defensively.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

/// Facts by name without the `ansible_` prefix (`hostname`, `default_ipv4`, ...).
pub type Facts = Map<String, Json>;

/// Largest facts answer read from a host.
pub const MAX_ANSWER: usize = 1 << 20;

/// The facts deploy offers (each also `ansible_<name>`).
pub const NAMES: &[&str] = &[
    "hostname",
    "fqdn",
    "nodename",
    "domain",
    "distribution",
    "distribution_version",
    "distribution_major_version",
    "distribution_release",
    "os_family",
    "system",
    "kernel",
    "kernel_version",
    "architecture",
    "machine",
    "processor_vcpus",
    "processor_cores",
    "processor_count",
    "processor_threads_per_core",
    "processor_nproc",
    "memtotal_mb",
    "default_ipv4",
    "all_ipv4_addresses",
    "env",
    "user_id",
    "user_uid",
    "user_gid",
    "date_time",
    // Windows hosts only (ansible.windows' setup).
    "ip_addresses",
];

/// The POSIX sh script a Unix host (or the controller) runs: sections headed by a line
/// `\x1e<name>`, raw material only, capped at [`MAX_ANSWER`] bytes by `head -c`.
pub const SH_SCRIPT: &str = r#"{
s() { printf '\n\036%s\n' "$1"; }
printf 'deploy-facts 1'
s env; env -0 2>/dev/null
s uname; uname -s; uname -n; uname -r; uname -v; uname -m
s user; printf '%s\n' "${LOGNAME:-${USER:-${LNAME:-${USERNAME:-$(id -un)}}}}"; id -u; id -g
s fqdn; h=$(uname -n); a=$(getent ahosts "$h" 2>/dev/null | head -n 1 | cut -d ' ' -f 1); [ -n "$a" ] && getent hosts "$a" 2>/dev/null | head -n 1
s meminfo; grep '^MemTotal:' /proc/meminfo
s cpuinfo; grep -E '^(model name|Processor|vendor_id|cpu|Vendor|processor|physical id|core id|cpu cores|siblings|# processors|max thread id|ncpus active)[[:space:]]*:' /proc/cpuinfo
s xen; if [ -e /proc/xen ]; then echo xen; elif [ "$(head -n 1 /sys/hypervisor/type 2>/dev/null)" = xen ]; then echo xen; fi
s novme; grep '^flags' /proc/cpuinfo | grep -vc vme
s affinity; grep '^Cpus_allowed_list:' /proc/self/status
s date; LC_ALL=C date '+%s %N|%Y|%m|%A|%w|%W|%d|%H|%M|%S|%Z|%z'
t=$(date +%s); t0=$(( t / 31557600 * 31557600 )); s tzjan; date -d "@$t0" '+%Z %z'; s tzjul; date -d "@$(( t0 + 15778800 ))" '+%Z %z'
for f in /etc/altlinux-release /etc/oracle-release /etc/slackware-version /etc/centos-release /etc/redhat-release /etc/vmware-release /etc/openwrt_release /etc/os-release /etc/system-release /etc/alpine-release /etc/arch-release /etc/SuSE-release /etc/gentoo-release /etc/lsb-release /etc/sourcemage-release /usr/lib/os-release /etc/coreos/update.conf /etc/debian_version /etc/*[-_]release /etc/*[-_]version; do
  if [ -e "$f" ]; then s "file $f"; head -c 65536 "$f"; fi
done
if command -v ip >/dev/null 2>&1; then
  s route; ip -4 route get 8.8.8.8 2>/dev/null | head -n 1
  for d in $(ls -U /sys/class/net 2>/dev/null); do
    p=/sys/class/net/$d; [ -d "$p" ] || continue
    s "dev $d"
    printf 'address=%s\n' "$(cat "$p/address" 2>/dev/null)"
    printf 'mtu=%s\n' "$(cat "$p/mtu" 2>/dev/null)"
    printf 'type=%s\n' "$(cat "$p/type" 2>/dev/null)"
    [ -e "$p/bridge" ] && echo bridge
    [ -e "$p/bonding" ] && echo bonding
    s "primary $d"; ip addr show primary dev "$d" 2>/dev/null || ip addr show dev "$d" 2>/dev/null
    s "secondary $d"; ip addr show secondary dev "$d" 2>/dev/null
  done
fi
s end
} 2>/dev/null | head -c 1048576
"#;

/// The first line of [`PS_SCRIPT`] (the WinRM stand-in of the tests recognises it).
pub const PS_MARKER: &str = "# deploy:facts v1";

/// The PowerShell script a Windows host runs: one JSON object holding the facts deploy
/// offers, computed as ansible.windows' `setup.ps1` computes them (its `distribution`,
/// `env`, `date_time`, `facter`/`platform`, `processor`, `memory`, `user` and
/// `all_ipv4_addresses` subsets), with CIM where setup.ps1 uses its own C# helpers.
pub const PS_SCRIPT: &str = r#"# deploy:facts v1
$ErrorActionPreference = 'Stop'
$osVersion = [Environment]::OSVersion
$ipProps = [System.Net.NetworkInformation.IPGlobalProperties]::GetIPGlobalProperties()
$fqdn = $ipProps.HostName
if ($ipProps.DomainName) { $fqdn = "$($fqdn).$($ipProps.DomainName)" }
$win32OS = Get-CimInstance -ClassName Win32_OperatingSystem -Property Caption, OSArchitecture
$win32CS = Get-CimInstance -ClassName Win32_ComputerSystem -Property Domain, PartOfDomain, TotalPhysicalMemory, NumberOfLogicalProcessors
$win32Proc = @(Get-CimInstance -ClassName Win32_Processor -Property NumberOfCores, NumberOfLogicalProcessors)
$domain = if ($win32CS.PartOfDomain) { [string]$win32CS.Domain } elseif ($ipProps.DomainName) { [string]$ipProps.DomainName } else { '' }
$ips = @(foreach ($interface in [System.Net.NetworkInformation.NetworkInterface]::GetAllNetworkInterfaces()) {
        $interface.GetIPProperties().UnicastAddresses | Where-Object {
            $_.Address.ToString() -notin @('::1', '127.0.0.1')
        } | ForEach-Object -Process { $_.Address.ToString() }
    })
$envVars = @{}
foreach ($item in Get-ChildItem -LiteralPath Env:) {
    $envVars[$item.Name] = $item.Value.TrimEnd('\')
}
$datetime = Get-Date
$datetimeUtc = $datetime.ToUniversalTime()
$epochStart = New-Object -TypeName DateTime -ArgumentList @(1970, 1, 1, 0, 0, 0, [DateTimeKind]::Utc)
$epoch = (New-TimeSpan -Start $epochStart -End $datetimeUtc).TotalSeconds
$cores = $null
$threads = $null
if ($win32Proc.Count -gt 0 -and $win32Proc[0].NumberOfCores) {
    $cores = $win32Proc[0].NumberOfCores
    $threads = $win32Proc[0].NumberOfLogicalProcessors / $win32Proc[0].NumberOfCores
}
$facts = @{
    hostname = $ipProps.HostName
    fqdn = $fqdn
    nodename = $fqdn
    domain = $domain
    distribution = $win32OS.Caption
    distribution_version = $osVersion.Version.ToString()
    distribution_major_version = $osVersion.Version.Major.ToString()
    os_family = 'Windows'
    system = $osVersion.Platform.ToString()
    kernel = $osVersion.Version.ToString()
    architecture = $win32OS.OSArchitecture
    processor_count = $win32Proc.Count
    processor_vcpus = [int]$win32CS.NumberOfLogicalProcessors
    processor_cores = $cores
    processor_threads_per_core = $threads
    memtotal_mb = [Math]::Ceiling($win32CS.TotalPhysicalMemory / 1024 / 1024)
    ip_addresses = $ips
    env = $envVars
    user_id = $env:USERNAME
    date_time = @{
        date = $datetime.ToString('yyyy-MM-dd')
        day = $datetime.ToString('dd')
        epoch_local = (Get-Date ($datetime) -UFormat '+%s')
        epoch = (Get-Date ($datetimeUtc) -UFormat '+%s')
        epoch_int = [int]$epoch
        hour = $datetime.ToString('HH')
        iso8601 = $datetimeUtc.ToString('yyyy-MM-ddTHH:mm:ssZ')
        iso8601_basic = $datetime.ToString('yyyyMMddTHHmmssffffff')
        iso8601_basic_short = $datetime.ToString('yyyyMMddTHHmmss')
        iso8601_micro = $datetimeUtc.ToString('yyyy-MM-ddTHH:mm:ss.ffffffZ')
        minute = $datetime.ToString('mm')
        month = $datetime.ToString('MM')
        second = $datetime.ToString('ss')
        time = $datetime.ToString('HH:mm:ss')
        tz = ([System.TimeZoneInfo]::Local.Id)
        tz_offset = $datetime.ToString('zzzz')
        weekday = $datetime.ToString('dddd', [System.Globalization.CultureInfo]::InvariantCulture)
        weekday_number = (Get-Date -UFormat '%w')
        weeknumber = (Get-Date -UFormat '%W')
        year = $datetime.ToString('yyyy')
    }
}
[Console]::Out.Write((ConvertTo-Json -InputObject $facts -Depth 3 -Compress))
"#;

/// Whether a host's templates and texts use facts, and which of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// `ansible_facts` or an `ansible_<fact>` name appeared somewhere.
    pub any: bool,
    /// The templates (relative to `templates/`) that use `ansible_date_time` (directly or
    /// through an include), for the plan's note.
    pub date_time_in: BTreeSet<String>,
    /// Where a fact was first seen (`templates/x.j2`, `dest of ...`, `variable x`).
    pub first: Option<String>,
    /// A text using facts also uses `hostvars`: other hosts' facts may be read, so every
    /// selected host is asked (unless its group turns facts off).
    pub via_hostvars: bool,
}

/// What in `text` refers to facts: `ansible_facts`, or `ansible_` + a name of [`NAMES`]
/// (as an identifier, or as `vars['ansible_...']`). Returns (any, date_time).
pub fn scan(text: &str) -> (bool, bool) {
    let mut any = false;
    let mut date_time = false;
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("ansible_") {
        let start = from + at;
        from = start + "ansible_".len();
        if start > 0 && is_ident(bytes[start - 1]) {
            continue;
        }
        let end = text[from..]
            .bytes()
            .position(|b| !is_ident(b))
            .map_or(text.len(), |n| from + n);
        let name = &text[from..end];
        if name == "facts" {
            any = true;
            // `ansible_facts.date_time`, `ansible_facts['date_time']`.
            let rest = &text[end..];
            let rest = rest.trim_start_matches(['.', '[', '\'', '"', ' ']);
            if rest.starts_with("date_time") {
                date_time = true;
            }
        } else if NAMES.contains(&name) {
            any = true;
            date_time |= name == "date_time";
        }
    }
    (any, date_time)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The templates `text` includes, imports or extends by a literal name.
pub fn included(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for kw in ["include", "import", "extends", "from"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(kw) {
            let start = from + at;
            from = start + kw.len();
            let before = text[..start].trim_end_matches([' ', '-', '\t']);
            if !before.ends_with("{%") {
                continue;
            }
            let rest = text[from..].trim_start();
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            if let Some(len) = rest[1..].find(quote) {
                names.push(rest[1..1 + len].to_string());
            }
        }
    }
    names
}

/// What a template and the templates it includes refer to, scanned once per run.
#[derive(Debug, Clone, Default)]
struct TemplateScan {
    any: bool,
    via_hostvars: bool,
    date_time: bool,
    /// The first template of the tree that uses facts.
    first: Option<String>,
}

/// The templates under one folder, each scanned (with its includes) the first time a host
/// gets it: hosts share templates, so a fleet reads each file once, not once per host.
#[derive(Debug)]
pub struct TemplateScans {
    dir: PathBuf,
    done: HashMap<String, TemplateScan>,
    /// Template files read so far (what the cache saves; the tests count it).
    reads: usize,
}

impl TemplateScans {
    pub fn new(dir: &Path) -> TemplateScans {
        TemplateScans {
            dir: dir.to_path_buf(),
            done: HashMap::new(),
            reads: 0,
        }
    }

    /// Adds what the template `name` and what it includes (each once, at most 1000
    /// templates) refer to, to `refs`. A template that cannot be read is skipped: rendering
    /// reports it.
    fn add(&mut self, name: &str, refs: &mut References) {
        let (dir, reads) = (&self.dir, &mut self.reads);
        let scan = self
            .done
            .entry(name.to_string())
            .or_insert_with(|| scan_tree(dir, name, reads));
        if scan.any {
            refs.any = true;
            refs.via_hostvars |= scan.via_hostvars;
            if refs.first.is_none() {
                refs.first.clone_from(&scan.first);
            }
        }
        if scan.date_time {
            refs.date_time_in.insert(name.to_string());
        }
    }
}

fn scan_tree(dir: &Path, name: &str, reads: &mut usize) -> TemplateScan {
    let mut out = TemplateScan::default();
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(t) = todo.pop() {
        if seen.len() >= 1000 || !seen.insert(t.clone()) {
            continue;
        }
        *reads += 1;
        let Ok(text) = std::fs::read_to_string(dir.join(&t)) else {
            continue;
        };
        let (any, dt) = scan(&text);
        if any {
            out.any = true;
            out.via_hostvars |= text.contains("hostvars");
            out.first.get_or_insert_with(|| format!("templates/{t}"));
        }
        out.date_time |= dt;
        todo.extend(included(&text));
    }
    out
}

/// Scans a text that is not a template file (a dest, a handler, a variable's value).
pub fn scan_text(text: &str, what: impl FnOnce() -> String, refs: &mut References) {
    let (any, _) = scan(text);
    if any {
        refs.any = true;
        refs.via_hostvars |= text.contains("hostvars");
        refs.first.get_or_insert_with(what);
    }
}

/// Scans every string in a variable's value.
pub fn scan_value(key: &str, value: &Json, refs: &mut References) {
    match value {
        Json::String(s) => scan_text(s, || format!("variable {key}"), refs),
        Json::Array(items) => items.iter().for_each(|v| scan_value(key, v, refs)),
        Json::Object(map) => map.values().for_each(|v| scan_value(key, v, refs)),
        _ => {}
    }
}

/// Whether a host's facts are gathered, and why not when they are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Gather,
    /// Not asked: nothing refers to facts.
    NotNeeded,
    /// Not asked although something refers to facts: `gather_facts: false` in this group.
    Off {
        group: String,
    },
}

/// What the host's part of deploy.yml (its groups' files, handlers and verify entries, and
/// every `checks:` entry) and its variables refer to, and whether to gather: a group's
/// `gather_facts: true` wins, then `false`, else what was found.
pub fn decide(
    manifest: &crate::manifest::Manifest,
    host: &crate::inventory::Host,
    templates: &mut TemplateScans,
) -> (Decision, References) {
    use crate::manifest::Content;
    let mut refs = References::default();
    let mut forced_on = false;
    let mut off: Option<String> = None;
    for (group, spec) in &manifest.groups {
        if !host.in_group(group) {
            continue;
        }
        match spec.gather_facts.as_ref().map(|g| g.value) {
            Some(true) => forced_on = true,
            Some(false) => {
                off.get_or_insert_with(|| group.clone());
            }
            None => {}
        }
        for f in &spec.files {
            if let Content::Template(t) = f.content() {
                templates.add(&t.value, &mut refs);
            }
            scan_text(
                &f.dest.value,
                || format!("dest {}", f.dest.value),
                &mut refs,
            );
            if let Some(v) = &f.validate {
                scan_text(&v.value, || "a validate command".into(), &mut refs);
            }
        }
        for h in &spec.handlers {
            scan_text(
                &h.run.value,
                || format!("handler `{}`", h.name.value),
                &mut refs,
            );
        }
        for v in &spec.verify {
            scan_text(
                &v.url.value,
                || format!("verify `{}`", v.name.value),
                &mut refs,
            );
            if let Some(c) = &v.contains {
                scan_text(&c.value, || format!("verify `{}`", v.name.value), &mut refs);
            }
        }
    }
    for c in &manifest.checks {
        scan_text(
            &c.that.value,
            || format!("check `{}`", c.name.value),
            &mut refs,
        );
        if let Some(m) = &c.message {
            scan_text(m, || format!("check `{}`", c.name.value), &mut refs);
        }
    }
    for (k, v) in &host.vars {
        scan_value(k, v, &mut refs);
    }
    let decision = if forced_on {
        Decision::Gather
    } else if let Some(group) = off {
        if refs.any {
            Decision::Off { group }
        } else {
            Decision::NotNeeded
        }
    } else if refs.any {
        Decision::Gather
    } else {
        Decision::NotNeeded
    };
    (decision, refs)
}

/// The plan's note for each template using `ansible_date_time`.
pub fn notes(refs: &References) -> Vec<String> {
    refs.date_time_in
        .iter()
        .map(|t| {
            format!(
                "templates/{t} uses ansible_date_time: its output changes on every run, so a diff shows each time"
            )
        })
        .collect()
}

/// `facts` as a host's variables: `ansible_facts` (names without the prefix) and each
/// `ansible_<name>`, as Ansible 2.19 injects them.
pub fn as_vars(facts: &Facts) -> Map<String, Json> {
    let mut vars = Map::new();
    for (k, v) in facts {
        vars.insert(format!("ansible_{k}"), v.clone());
    }
    vars.insert("ansible_facts".into(), Json::Object(facts.clone()));
    vars
}

/// The sections of the sh script's answer, in order: `(name, bytes)`.
fn sections(answer: &[u8]) -> Result<Vec<(String, &[u8])>, String> {
    if answer.len() >= MAX_ANSWER {
        return Err(format!(
            "the facts answer is {} bytes or more (at most {MAX_ANSWER})",
            MAX_ANSWER
        ));
    }
    let Some(rest) = answer.strip_prefix(b"deploy-facts 1") else {
        let start = String::from_utf8_lossy(&answer[..answer.len().min(80)]).into_owned();
        return Err(format!(
            "the facts script did not run (its answer starts {:?})",
            crate::text::prefix(&start, 80)
        ));
    };
    let mut out: Vec<(String, &[u8])> = Vec::new();
    // Each section starts with "\n\x1e<name>\n"; its body ends where the next "\n\x1e" is.
    let mut parts = split_marker(rest).into_iter();
    if let Some(first) = parts.next()
        && !first.is_empty()
    {
        return Err("the facts answer does not start with a section".into());
    }
    for part in parts {
        let (name, body) = match part.iter().position(|&b| b == b'\n') {
            Some(n) => (&part[..n], &part[n + 1..]),
            None => (part, &part[part.len()..]),
        };
        let name = String::from_utf8_lossy(name).into_owned();
        out.push((name, body));
    }
    if out.last().map(|(n, _)| n.as_str()) != Some("end") {
        return Err("the facts answer is cut short (no end section)".into());
    }
    Ok(out)
}

fn split_marker(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == b'\n' && data[i + 1] == 0x1e {
            parts.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    parts.push(&data[start..]);
    parts
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The answer of [`SH_SCRIPT`] -> facts. The error says what is wrong with the answer (the
/// caller names the host).
pub fn parse_posix(answer: &[u8]) -> Result<Facts, String> {
    let sections = sections(answer)?;
    let get = |name: &str| -> Option<&[u8]> {
        sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, body)| *body)
    };
    let lines = |name: &str| -> Vec<String> {
        get(name)
            .map(|b| text(b).lines().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut f = Facts::new();

    // platform.py
    let uname = lines("uname");
    if uname.len() < 5 {
        return Err(format!(
            "the facts answer has {} uname lines, not 5",
            uname.len()
        ));
    }
    let system = uname[0].clone();
    let nodename = uname[1].clone();
    let machine = uname[4].clone();
    let fqdn = fqdn(&lines("fqdn"), &nodename);
    f.insert("system".into(), json!(system));
    f.insert("kernel".into(), json!(uname[2]));
    f.insert("kernel_version".into(), json!(uname[3]));
    f.insert("machine".into(), json!(machine));
    f.insert("fqdn".into(), json!(fqdn));
    let hostname = nodename.split('.').next().unwrap_or_default().to_string();
    f.insert("hostname".into(), json!(hostname));
    f.insert("nodename".into(), json!(nodename));
    let domain: Vec<&str> = fqdn.split('.').skip(1).collect();
    f.insert("domain".into(), json!(domain.join(".")));
    f.insert("architecture".into(), json!(machine));

    // distribution.py
    let files: Vec<(String, String)> = sections
        .iter()
        .filter_map(|(n, b)| n.strip_prefix("file ").map(|p| (p.to_string(), text(b))))
        .collect();
    for (k, v) in distribution(&system, &uname[2], &uname[3], &files) {
        f.insert(k, v);
    }

    // hardware/linux.py
    let arch = f
        .get("architecture")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(cpu) = cpu_facts(
        &lines("cpuinfo"),
        !lines("xen").is_empty(),
        lines("novme").first().is_some_and(|n| n.trim() != "0"),
        &arch,
        &lines("affinity"),
    )? {
        for (k, v) in cpu {
            f.insert(k, v);
        }
    }
    if let Some(line) = lines("meminfo").first() {
        let kb = line
            .trim_start_matches("MemTotal:")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| format!("MemTotal line {:?} has no number", short(line)))?;
        f.insert("memtotal_mb".into(), json!(kb / 1024));
    }

    // network/linux.py
    if let Some(route) = get("route") {
        let (default, all) = network(&text(route), &sections)?;
        f.insert("default_ipv4".into(), Json::Object(default));
        f.insert("all_ipv4_addresses".into(), json!(all));
    }

    // system/env.py
    let mut env = Map::new();
    if let Some(body) = get("env") {
        for item in body.split(|&b| b == 0) {
            let item = text(item);
            if let Some((k, v)) = item.split_once('=') {
                env.insert(k.to_string(), json!(v));
            }
        }
    }
    f.insert("env".into(), Json::Object(env));

    // system/user.py
    let user = lines("user");
    if let Some(id) = user.first() {
        f.insert("user_id".into(), json!(id));
    }
    for (i, key) in [(1, "user_uid"), (2, "user_gid")] {
        if let Some(n) = user.get(i).and_then(|n| n.trim().parse::<u64>().ok()) {
            f.insert(key.into(), json!(n));
        }
    }

    // system/date_time.py
    let date = lines("date");
    if let Some(line) = date.first() {
        let jan = lines("tzjan");
        let jul = lines("tzjul");
        f.insert(
            "date_time".into(),
            date_time(line, jan.first(), jul.first())?,
        );
    }
    Ok(f)
}

fn short(s: &str) -> &str {
    crate::text::prefix(s, 80)
}

/// Python's `socket.getfqdn()`: the name and aliases `gethostbyaddr` gives for the first
/// address of the node name, the first with a dot, else that name; the node name when the
/// lookup fails.
fn fqdn(lines: &[String], nodename: &str) -> String {
    let Some(line) = lines.first() else {
        return nodename.to_string();
    };
    let names: Vec<&str> = line.split_whitespace().skip(1).collect();
    match names.first() {
        None => nodename.to_string(),
        Some(first) => names
            .iter()
            .find(|n| n.contains('.'))
            .unwrap_or(first)
            .to_string(),
    }
}

/// os-release text -> key -> value (quotes removed, as distro reads it).
fn os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.trim().split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_lowercase(), v.replace("\\\"", "\"")))
        })
        .collect()
}

/// Python's `str.capitalize()`.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        None => String::new(),
        Some(c) => c
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
    }
}

const OS_FAMILY: &[(&str, &[&str])] = &[
    (
        "RedHat",
        &[
            "RedHat",
            "RHEL",
            "Fedora",
            "CentOS",
            "Scientific",
            "SLC",
            "Ascendos",
            "CloudLinux",
            "PSBM",
            "OracleLinux",
            "OVS",
            "OEL",
            "Amazon",
            "Amzn",
            "Virtuozzo",
            "XenServer",
            "Alibaba",
            "EulerOS",
            "openEuler",
            "AlmaLinux",
            "Rocky",
            "TencentOS",
            "EuroLinux",
            "Kylin Linux Advanced Server",
            "MIRACLE",
        ],
    ),
    (
        "Debian",
        &[
            "Debian",
            "Ubuntu",
            "Raspbian",
            "Neon",
            "KDE neon",
            "Linux Mint",
            "SteamOS",
            "Devuan",
            "Kali",
            "Cumulus Linux",
            "Pop!_OS",
            "Parrot",
            "Pardus GNU/Linux",
            "Uos",
            "Deepin",
            "OSMC",
        ],
    ),
    (
        "Suse",
        &[
            "SuSE",
            "SLES",
            "SLED",
            "openSUSE",
            "openSUSE Tumbleweed",
            "SLES_SAP",
            "SUSE_LINUX",
            "openSUSE Leap",
            "ALP-Dolomite",
            "SL-Micro",
        ],
    ),
    ("Archlinux", &["Archlinux", "Antergos", "Manjaro"]),
    ("Mandrake", &["Mandrake", "Mandriva"]),
    (
        "Solaris",
        &["Solaris", "Nexenta", "OmniOS", "OpenIndiana", "SmartOS"],
    ),
    ("Slackware", &["Slackware"]),
    ("Altlinux", &["Altlinux"]),
    ("SMGL", &["SMGL"]),
    ("Gentoo", &["Gentoo", "Funtoo"]),
    ("Alpine", &["Alpine"]),
    ("AIX", &["AIX"]),
    ("HP-UX", &["HPUX"]),
    ("Darwin", &["MacOSX"]),
    ("FreeBSD", &["FreeBSD", "TrueOS"]),
    ("ClearLinux", &["Clear Linux OS", "Clear Linux Mix"]),
    (
        "DragonFly",
        &[
            "DragonflyBSD",
            "DragonFlyBSD",
            "Gentoo/DragonflyBSD",
            "Gentoo/DragonFlyBSD",
        ],
    ),
    ("NetBSD", &["NetBSD"]),
];

/// ansible-core's `Distribution.get_distribution_facts` on Linux: distro's guess from
/// os-release, then the first distribution file (its `OSDIST_LIST` order) a parser accepts.
/// Parsers deploy has: the search strings (Oracle, Red Hat, ALT, Source Mage), CentOS,
/// Amazon, Alpine, Arch, Slackware, OpenWrt, Debian (and its derivatives), VMware ESX and
/// the generic os-release one (`NA`); others (SUSE, Gentoo, Mandriva, CoreOS, Flatcar,
/// Clear Linux) are passed over as unparsed. Other systems: uname's.
fn distribution(system: &str, release: &str, version: &str, files: &[(String, String)]) -> Facts {
    let mut d = Facts::new();
    let file = |p: &str| files.iter().find(|(f, _)| f == p).map(|(_, t)| t.as_str());
    if system != "Linux" {
        d.insert("distribution".into(), json!(system));
        d.insert("distribution_release".into(), json!(release));
        d.insert("distribution_version".into(), json!(version));
    } else {
        let osr = file("/etc/os-release")
            .or_else(|| file("/usr/lib/os-release"))
            .map(os_release)
            .unwrap_or_default();
        let attr = |k: &str| {
            osr.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let has = |k: &str| osr.iter().any(|(key, _)| key == k);
        let release_file = distro_release_file(files);
        let rel = |k: &str| -> String {
            release_file
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        // distro.id(): os-release's, else the distro release file's.
        let mut id = attr("id").to_lowercase().replace(' ', "_");
        id = match id.as_str() {
            "ol" => "oracle".into(),
            "opensuse-leap" => "opensuse".into(),
            "" => match rel("id").to_lowercase().replace(' ', "_").as_str() {
                "redhat" => "rhel".into(),
                other => other.to_string(),
            },
            _ => id,
        };
        let mut name = capitalize(&id);
        name = match name.as_str() {
            "Amzn" => "Amazon".into(),
            "Rhel" => "Redhat".into(),
            "" => "OtherLinux".into(),
            _ => name,
        };
        // distro.version(), best=True for debian and centos.
        let pretty = parse_release_line(&attr("pretty_name"));
        let pretty_version = pretty
            .iter()
            .find(|(k, _)| *k == "version_id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut candidates = vec![attr("version_id"), rel("version_id"), pretty_version];
        let like = attr("id_like");
        if id == "debian" || like.split_whitespace().any(|l| l == "debian") {
            candidates.push(
                file("/etc/debian_version")
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            );
        }
        let first = candidates
            .iter()
            .find(|v| !v.is_empty())
            .cloned()
            .unwrap_or_default();
        let mut best = String::new();
        for v in &candidates {
            if v.matches('.').count() > best.matches('.').count() || best.is_empty() {
                best = v.clone();
            }
        }
        let version = match id.as_str() {
            "debian" => best,
            "centos" => best.split('.').take(2).collect::<Vec<_>>().join("."),
            _ => first,
        };
        // sys_info.get_distribution_codename(): os-release's VERSION_CODENAME (even empty),
        // UBUNTU_CODENAME, else distro.codename() (os-release's, from VERSION, else the
        // release file's), None when empty.
        let codename = if has("version_codename") {
            Some(attr("version_codename"))
        } else if has("ubuntu_codename") {
            Some(attr("ubuntu_codename"))
        } else {
            let from_version = regex::Regex::new(r"\((\D+)\)|,\s*(\D+)")
                .ok()
                .and_then(|re| {
                    let v = attr("version");
                    let c = re.captures(&v)?;
                    c.get(1)
                        .or_else(|| c.get(2))
                        .map(|m| m.as_str().to_string())
                });
            from_version
                .or_else(|| Some(rel("codename")))
                .filter(|c| !c.is_empty())
        };
        let version = if version.is_empty() {
            "NA".to_string()
        } else {
            version
        };
        d.insert("distribution".into(), json!(name));
        d.insert(
            "distribution_release".into(),
            json!(codename.unwrap_or_else(|| "NA".into())),
        );
        let major = version.split('.').next().unwrap_or_default();
        d.insert(
            "distribution_major_version".into(),
            json!(if major.is_empty() { "NA" } else { major }),
        );
        d.insert("distribution_version".into(), json!(version));
        dist_files(&mut d, files);
    }
    let distro = d
        .get("distribution")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let family = OS_FAMILY
        .iter()
        .find(|(_, names)| names.contains(&distro.as_str()))
        .map_or(distro.as_str(), |(f, _)| f);
    d.insert("os_family".into(), json!(family));
    d
}

/// distro's `_parse_distro_release_content`: a release file's first line ("CentOS Linux
/// release 8.1.1911 (Core)") -> name, version_id, codename, matched reversed as distro does.
fn parse_release_line(line: &str) -> Vec<(&'static str, String)> {
    let reversed: String = line.trim().chars().rev().collect();
    let Ok(re) =
        regex::Regex::new(r"^(?:[^)]*\)(.*)\()? *(?:STL )?([\d.+\-a-z]*\d) *(?:esaeler *)?(.+)?")
    else {
        return Vec::new();
    };
    let back = |m: Option<regex::Match>| m.map(|m| m.as_str().chars().rev().collect::<String>());
    let mut out = Vec::new();
    match re.captures(&reversed) {
        Some(c) => {
            out.push(("name", back(c.get(3)).unwrap_or_default()));
            if let Some(v) = back(c.get(2)).filter(|v| !v.is_empty()) {
                out.push(("version_id", v));
            }
            if let Some(v) = back(c.get(1)).filter(|v| !v.is_empty()) {
                out.push(("codename", v));
            }
        }
        None if !line.trim().is_empty() => out.push(("name", line.trim().to_string())),
        None => {}
    }
    out
}

/// distro's distro release file: the first `/etc/<id>[-_](release|version)` in name order
/// (not os-release, lsb-release, debian_version and the others distro ignores) whose first
/// line gives a name; its info with `id`.
fn distro_release_file(files: &[(String, String)]) -> Vec<(&'static str, String)> {
    const IGNORED: &[&str] = &[
        "debian_version",
        "lsb-release",
        "oem-release",
        "os-release",
        "system-release",
        "plesk-release",
        "iredmail-release",
        "board-release",
        "ec2_version",
    ];
    let Ok(pattern) = regex::Regex::new(r"^(\w+)[-_](release|version)$") else {
        return Vec::new();
    };
    let mut names: Vec<(&str, &str)> = files
        .iter()
        .filter_map(|(path, text)| {
            let base = path.strip_prefix("/etc/")?;
            (!base.contains('/') && !IGNORED.contains(&base)).then_some((base, text.as_str()))
        })
        .collect();
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    for (base, text) in names {
        let Some(c) = pattern.captures(base) else {
            continue;
        };
        let mut info = parse_release_line(text.lines().next().unwrap_or_default());
        if !info.iter().any(|(k, _)| *k == "name") {
            continue;
        }
        let cloud = info
            .iter()
            .any(|(k, v)| *k == "name" && v.to_lowercase().contains("cloudlinux"));
        let id = if cloud {
            "cloudlinux".to_string()
        } else {
            c.get(1).map_or(String::new(), |m| m.as_str().to_string())
        };
        info.push(("id", id));
        return info;
    }
    Vec::new()
}

/// `DistributionFiles.process_dist_files` after the guess: the first file that parses.
fn dist_files(d: &mut Facts, files: &[(String, String)]) {
    const LIST: &[(&str, &str, bool)] = &[
        ("/etc/altlinux-release", "Altlinux", false),
        ("/etc/oracle-release", "OracleLinux", false),
        ("/etc/slackware-version", "Slackware", false),
        ("/etc/centos-release", "CentOS", false),
        ("/etc/redhat-release", "RedHat", false),
        ("/etc/vmware-release", "VMwareESX", true),
        ("/etc/openwrt_release", "OpenWrt", false),
        ("/etc/os-release", "Amazon", false),
        ("/etc/system-release", "Amazon", false),
        ("/etc/alpine-release", "Alpine", false),
        ("/etc/arch-release", "Archlinux", true),
        ("/etc/os-release", "Archlinux", false),
        ("/etc/os-release", "SUSE", false),
        ("/etc/SuSE-release", "SUSE", false),
        ("/etc/gentoo-release", "Gentoo", false),
        ("/etc/os-release", "Debian", false),
        ("/etc/lsb-release", "Debian", false),
        ("/etc/lsb-release", "Mandriva", false),
        ("/etc/sourcemage-release", "SMGL", false),
        ("/usr/lib/os-release", "ClearLinux", false),
        ("/etc/coreos/update.conf", "Coreos", false),
        ("/etc/os-release", "Flatcar", false),
        ("/etc/os-release", "NA", false),
    ];
    for (path, name, allow_empty) in LIST {
        let Some((_, content)) = files.iter().find(|(f, _)| f == path) else {
            continue;
        };
        if *allow_empty {
            d.insert("distribution".into(), json!(name));
            break;
        }
        if content.is_empty() {
            continue;
        }
        let data = content.trim_matches(['\'', '"', '\\']);
        if let Some(parsed) = parse_dist_file(name, data, path, d) {
            d.insert("distribution".into(), json!(name));
            for (k, v) in parsed {
                d.insert(k, v);
            }
            break;
        }
    }
}

fn first_group(re: &str, data: &str) -> Option<String> {
    regex::Regex::new(re)
        .ok()?
        .captures(data)?
        .get(1)
        .map(|m| m.as_str().to_string())
}

fn parse_dist_file(name: &str, data: &str, path: &str, d: &Facts) -> Option<Facts> {
    let mut f = Facts::new();
    let search = match name {
        "OracleLinux" => Some("Oracle Linux"),
        "RedHat" => Some("Red Hat"),
        "Altlinux" => Some("ALT"),
        "SMGL" => Some("Source Mage GNU/Linux"),
        _ => None,
    };
    if let Some(search) = search {
        if data.contains(search) {
            f.insert("distribution".into(), json!(name));
        } else {
            let word = data.split_whitespace().next().unwrap_or_default();
            f.insert("distribution".into(), json!(word));
        }
        return Some(f);
    }
    let collected = |k: &str| d.get(k).and_then(Json::as_str).unwrap_or_default();
    match name {
        "Archlinux" => data.contains("Arch Linux").then_some(f),
        "Slackware" => {
            if !data.contains("Slackware") {
                return None;
            }
            if let Some(m) = regex::Regex::new(r"\w+[.]\w+\+?").ok()?.find(data) {
                f.insert("distribution_version".into(), json!(m.as_str()));
            }
            Some(f)
        }
        "Amazon" => {
            if !data.contains("Amazon") {
                return None;
            }
            f.insert("distribution".into(), json!("Amazon"));
            if path == "/etc/os-release" {
                if let Some(v) = first_group(r#"VERSION_ID="(.*)""#, data) {
                    let parts: Vec<&str> = v.split('.').collect();
                    f.insert("distribution_major_version".into(), json!(parts[0]));
                    f.insert("distribution_version".into(), json!(v));
                }
            } else {
                let v = data
                    .split_whitespace()
                    .find(|n| n.chars().all(|c| c.is_ascii_digit()))
                    .unwrap_or("NA");
                f.insert("distribution_version".into(), json!(v));
            }
            Some(f)
        }
        "OpenWrt" => {
            if !data.contains("OpenWrt") {
                return None;
            }
            if let Some(v) = first_group(r#"DISTRIB_RELEASE="(.*)""#, data) {
                f.insert("distribution_version".into(), json!(v));
            }
            if let Some(v) = first_group(r#"DISTRIB_CODENAME="(.*)""#, data) {
                f.insert("distribution_release".into(), json!(v));
            }
            Some(f)
        }
        "Alpine" => {
            f.insert("distribution".into(), json!("Alpine"));
            f.insert("distribution_version".into(), json!(data));
            Some(f)
        }
        "CentOS" => {
            if data.contains("CentOS Stream") {
                f.insert("distribution_release".into(), json!("Stream"));
                Some(f)
            } else if data.contains("TencentOS Server") {
                f.insert("distribution".into(), json!("TencentOS"));
                Some(f)
            } else {
                None
            }
        }
        "Debian" => {
            if data.contains("Debian") || data.contains("Raspbian") {
                f.insert("distribution".into(), json!("Debian"));
                if let Some(r) = first_group(r"PRETTY_NAME=[^(]+ \(?([^)]+?)\)", data) {
                    f.insert("distribution_release".into(), json!(r));
                }
            } else if data.contains("Ubuntu") {
                f.insert("distribution".into(), json!("Ubuntu"));
            } else if data.contains("SteamOS") {
                f.insert("distribution".into(), json!("SteamOS"));
            } else if (path == "/etc/lsb-release" || path == "/etc/os-release")
                && (data.contains("Kali") || data.contains("Parrot"))
            {
                let which = if data.contains("Kali") {
                    "Kali"
                } else {
                    "Parrot"
                };
                f.insert("distribution".into(), json!(which));
                if let Some(r) = first_group("DISTRIB_RELEASE=(.*)", data) {
                    f.insert("distribution_release".into(), json!(r));
                }
            } else if data.contains("Devuan") {
                f.insert("distribution".into(), json!("Devuan"));
                if let Some(r) = first_group(r#"PRETTY_NAME="?[^("]+ \(?([^) "]+)\)?"#, data) {
                    f.insert("distribution_release".into(), json!(r));
                }
                if let Some(v) = first_group(r#"VERSION_ID="(.*)""#, data) {
                    f.insert("distribution_version".into(), json!(v));
                    f.insert("distribution_major_version".into(), json!(v));
                }
            } else if data.contains("Mint") {
                f.insert("distribution".into(), json!("Linux Mint"));
                if let Some(v) = first_group(r#"VERSION_ID="(.*)""#, data) {
                    let major = v.split('.').next().unwrap_or_default().to_string();
                    f.insert("distribution_version".into(), json!(v));
                    f.insert("distribution_major_version".into(), json!(major));
                }
            } else {
                return None;
            }
            Some(f)
        }
        "NA" => {
            for line in data.lines() {
                if let Some(n) = line.strip_prefix("NAME=") {
                    f.insert("distribution".into(), json!(n.trim_matches('"')));
                }
                if let Some(v) = line.strip_prefix("VERSION=")
                    && collected("distribution_version") == "NA"
                {
                    f.insert("distribution_version".into(), json!(v.trim_matches('"')));
                }
            }
            Some(f)
        }
        _ => None,
    }
}

/// Python's `round()` of a ratio of counts: half to even.
fn py_round(num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    let q = num / den;
    let r = u128::from(num % den);
    match (2 * r).cmp(&u128::from(den)) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q % 2),
    }
}

/// `LinuxHardware.get_cpu_facts` from the grepped /proc/cpuinfo lines.
fn cpu_facts(
    lines: &[String],
    xen: bool,
    no_vme: bool,
    arch: &str,
    affinity: &[String],
) -> Result<Option<Facts>, String> {
    if lines.is_empty() {
        return Ok(None);
    }
    let num = |v: &str| -> Result<u64, String> {
        v.parse::<u64>()
            .map_err(|_| format!("/proc/cpuinfo: {:?} is not a count", short(v)))
    };
    let mut i: u64 = 0;
    let (mut vendor, mut model, mut processor) = (0u64, 0u64, 0u64);
    let mut physid = "0".to_string();
    let mut coreid = "0".to_string();
    let mut sockets: indexmap::IndexMap<String, u64> = indexmap::IndexMap::new();
    let mut cores: indexmap::IndexMap<String, u64> = indexmap::IndexMap::new();
    let (mut zp, mut zmt) = (0u64, 0u64);
    for line in lines {
        let (key, val) = match line.split_once(':') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line.trim(), ""),
        };
        match key {
            "model name" | "Processor" | "vendor_id" | "cpu" | "Vendor" | "processor" => {
                match key {
                    "vendor_id" => vendor += 1,
                    "model name" => model += 1,
                    "processor" => processor += 1,
                    _ => {}
                }
                i += 1;
            }
            "physical id" => {
                physid = val.to_string();
                sockets.entry(physid.clone()).or_insert(1);
            }
            "core id" => {
                coreid = val.to_string();
                // (sic) ansible-core checks `sockets` here.
                if !sockets.contains_key(&coreid) {
                    cores.insert(coreid.clone(), 1);
                }
            }
            "cpu cores" => {
                sockets.insert(physid.clone(), num(val)?);
            }
            "siblings" => {
                cores.insert(coreid.clone(), num(val)?);
            }
            "# processors" => zp = num(val)?,
            "max thread id" => zmt = num(val)?.saturating_add(1),
            "ncpus active" => i = num(val)?,
            _ => {}
        }
    }
    if vendor > 0 && vendor == model {
        i = vendor;
    }
    if arch.starts_with("armv") || arch.starts_with("aarch") || arch.starts_with("ppc") {
        i = processor;
    }
    let mut f = Facts::new();
    if arch == "s390x" {
        f.insert("processor_count".into(), json!(1));
        f.insert("processor_cores".into(), json!(py_round(zp, zmt)));
        f.insert("processor_threads_per_core".into(), json!(zmt));
        f.insert("processor_vcpus".into(), json!(zp));
        f.insert("processor_nproc".into(), json!(zp));
    } else if xen && no_vme {
        for k in [
            "processor_count",
            "processor_cores",
            "processor_vcpus",
            "processor_nproc",
        ] {
            f.insert(k.into(), json!(i));
        }
        f.insert("processor_threads_per_core".into(), json!(1));
    } else {
        let count = if sockets.is_empty() {
            i
        } else {
            sockets.len() as u64
        };
        let cores_per = match sockets.values().next() {
            Some(&n) if n > 0 => n,
            _ => 1,
        };
        let threads = match cores.values().next() {
            Some(&n) => py_round(n, cores_per),
            None => py_round(1, cores_per),
        };
        f.insert("processor_count".into(), json!(count));
        f.insert("processor_cores".into(), json!(cores_per));
        f.insert("processor_threads_per_core".into(), json!(threads));
        let vcpus = threads.saturating_mul(count).saturating_mul(cores_per);
        f.insert("processor_vcpus".into(), json!(vcpus));
        f.insert("processor_nproc".into(), json!(processor));
    }
    // len(os.sched_getaffinity(0)), from the kernel's list "0-3,8".
    if let Some(list) = affinity
        .first()
        .and_then(|l| l.strip_prefix("Cpus_allowed_list:"))
    {
        let mut n: u64 = 0;
        for part in list.trim().split(',').filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b) = (num(a.trim())?, num(b.trim())?);
            n = n.saturating_add(b.saturating_sub(a).saturating_add(1));
        }
        f.insert("processor_nproc".into(), json!(n));
    }
    Ok(Some(f))
}

/// `LinuxNetwork`'s default IPv4 interface (from `ip -4 route get 8.8.8.8`, completed from
/// the interface's addresses) and every IPv4 address but 127.*.
fn network(
    route: &str,
    sections: &[(String, &[u8])],
) -> Result<(Map<String, Json>, Vec<String>), String> {
    let mut default = Map::new();
    let words: Vec<&str> = route
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if words.first() == Some(&"8.8.8.8") {
        for w in words.windows(2) {
            match w[0] {
                "dev" => {
                    default.insert("interface".into(), json!(w[1]));
                }
                "src" => {
                    default.insert("address".into(), json!(w[1]));
                }
                "via" if w[1] != "8.8.8.8" => {
                    default.insert("gateway".into(), json!(w[1]));
                }
                _ => {}
            }
        }
    }
    let mut all = Vec::new();
    let mut device = String::new();
    let (mut mac, mut mtu, mut kind) = (String::new(), Json::Null, "unknown".to_string());
    for (name, body) in sections {
        if let Some(d) = name.strip_prefix("dev ") {
            device = d.to_string();
            mtu = Json::Null;
            kind = "unknown".into();
            for line in text(body).lines() {
                if let Some(v) = line.strip_prefix("address=") {
                    mac = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("mtu=") {
                    mtu = v.trim().parse::<u64>().map_or(Json::Null, |n| json!(n));
                } else if let Some(v) = line.strip_prefix("type=") {
                    kind = match v.trim() {
                        "1" => "ether",
                        "32" => "infiniband",
                        "512" => "ppp",
                        "772" => "loopback",
                        "65534" => "tunnel",
                        _ => "unknown",
                    }
                    .into();
                } else if line == "bridge" {
                    kind = "bridge".into();
                } else if line == "bonding" {
                    kind = "bonding".into();
                }
            }
            continue;
        }
        let is_addr = name
            .strip_prefix("primary ")
            .or_else(|| name.strip_prefix("secondary "));
        if is_addr != Some(device.as_str()) {
            continue;
        }
        for line in text(body).lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.first() != Some(&"inet") || w.len() < 2 {
                continue;
            }
            let (address, prefix) = match w[1].split_once('/') {
                Some((a, p)) => (a, p),
                None => (w[1], "32"),
            };
            let broadcast = if w[1].contains('/') && w.len() > 3 && w[2] == "brd" {
                w[3]
            } else {
                ""
            };
            let addr: std::net::Ipv4Addr = address.parse().map_err(|_| {
                format!("`ip addr` shows {:?}, not an IPv4 address", short(address))
            })?;
            let len: u32 = prefix
                .parse()
                .ok()
                .filter(|n| *n <= 32)
                .ok_or_else(|| format!("`ip addr` shows the prefix {:?}", short(prefix)))?;
            let mask: u32 = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let netmask = std::net::Ipv4Addr::from(mask);
            let net = std::net::Ipv4Addr::from(u32::from(addr) & mask);
            if default.get("address").and_then(Json::as_str) == Some(address) {
                default.insert("broadcast".into(), json!(broadcast));
                default.insert("netmask".into(), json!(netmask.to_string()));
                default.insert("network".into(), json!(net.to_string()));
                default.insert("prefix".into(), json!(prefix));
                default.insert("macaddress".into(), json!(mac));
                default.insert("mtu".into(), mtu.clone());
                default.insert("type".into(), json!(kind));
                default.insert("alias".into(), json!(w[w.len() - 1]));
            }
            if !address.starts_with("127.") {
                all.push(address.to_string());
            }
        }
    }
    Ok((default, all))
}

/// `DateTimeFactCollector` from the host's `date '+%s %N|%Y|%m|%A|%w|%W|%d|%H|%M|%S|%Z|%z'`
/// and the zone names of its Jan and Jul (Python's `time.tzname[1]`).
fn date_time(line: &str, jan: Option<&String>, jul: Option<&String>) -> Result<Json, String> {
    let bad = || format!("the host's date answer {:?} is not understood", short(line));
    let p: Vec<&str> = line.split('|').collect();
    if p.len() != 12 {
        return Err(bad());
    }
    let (epoch, nanos) = p[0].split_once(' ').ok_or_else(bad)?;
    let epoch_n: i64 = epoch.parse().map_err(|_| bad())?;
    let micro: String = nanos.chars().take(6).collect();
    if micro.len() != 6 || !micro.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (year, month, weekday, wnum, week, day, hour, minute, second) =
        (p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]);
    let utc = utc_fields(epoch_n).ok_or_else(bad)?;
    let zone = |z: Option<&String>| -> Option<(String, i64)> {
        let (name, off) = z?.split_once(' ')?;
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits = off.trim_start_matches(['+', '-']);
        // `%z` is +hhmm: four digits.
        let n: i64 = digits.parse().ok().filter(|n| (0..10_000).contains(n))?;
        Some((name.to_string(), sign * ((n / 100) * 3600 + (n % 100) * 60)))
    };
    let tz_dst = match (zone(jan), zone(jul)) {
        // CPython's init_timezone: the southern hemisphere's DST is in January.
        (Some((jn, joff)), Some((un, uoff))) => {
            if -joff < -uoff {
                jn
            } else {
                un
            }
        }
        _ => p[10].to_string(),
    };
    Ok(json!({
        "year": year,
        "month": month,
        "weekday": weekday,
        "weekday_number": wnum,
        "weeknumber": week,
        "day": day,
        "hour": hour,
        "minute": minute,
        "second": second,
        "epoch": epoch,
        "epoch_int": epoch_n.to_string(),
        "date": format!("{year}-{month}-{day}"),
        "time": format!("{hour}:{minute}:{second}"),
        "iso8601_micro": format!("{utc}.{micro}Z"),
        "iso8601": format!("{utc}Z"),
        "iso8601_basic": format!("{year}{month}{day}T{hour}{minute}{second}{micro}"),
        "iso8601_basic_short": format!("{year}{month}{day}T{hour}{minute}{second}"),
        "tz": p[10],
        "tz_dst": tz_dst,
        "tz_offset": p[11],
    }))
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, in UTC.
fn utc_fields(epoch: i64) -> Option<String> {
    let days = epoch.div_euclid(86400);
    let secs = epoch.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

/// The facts [`PS_SCRIPT`] answers, and what each must be: text, a count, a list of texts,
/// an object of texts (`env`) or the `date_time` object.
const WINDOWS_FACTS: &[(&str, Kind)] = &[
    ("hostname", Kind::Text),
    ("fqdn", Kind::Text),
    ("nodename", Kind::Text),
    ("domain", Kind::Text),
    ("distribution", Kind::Text),
    ("distribution_version", Kind::Text),
    ("distribution_major_version", Kind::Text),
    ("os_family", Kind::Text),
    ("system", Kind::Text),
    ("kernel", Kind::Text),
    ("architecture", Kind::Text),
    ("processor_count", Kind::Number),
    ("processor_vcpus", Kind::Number),
    ("processor_cores", Kind::Number),
    ("processor_threads_per_core", Kind::Number),
    ("memtotal_mb", Kind::Number),
    ("ip_addresses", Kind::Texts),
    ("env", Kind::TextMap),
    ("user_id", Kind::Text),
    ("date_time", Kind::TextMap),
];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Number,
    Texts,
    TextMap,
}

/// The answer of [`PS_SCRIPT`] -> facts, named as ansible.windows' `setup` names them. A
/// value may be null where setup.ps1 gives null (e.g. no caption without admin rights).
pub fn parse_windows(answer: &[u8]) -> Result<Facts, String> {
    if answer.len() >= MAX_ANSWER {
        return Err(format!(
            "the facts answer is {} bytes or more (at most {MAX_ANSWER})",
            MAX_ANSWER
        ));
    }
    let v: Json = serde_json::from_slice(answer.trim_ascii())
        .map_err(|e| format!("the facts answer is not JSON: {e}"))?;
    let Json::Object(mut a) = v else {
        return Err("the facts answer is not a JSON object".into());
    };
    let mut f = Facts::new();
    for (name, kind) in WINDOWS_FACTS {
        let value = a.remove(*name).unwrap_or(Json::Null);
        let ok = match (kind, &value) {
            (_, Json::Null) => true,
            (Kind::Text, v) => v.is_string(),
            (Kind::Number, v) => v.is_number(),
            // ConvertTo-Json writes a one-item array as that item.
            (Kind::Texts, Json::String(_)) => true,
            (Kind::Texts, Json::Array(items)) => items.iter().all(Json::is_string),
            (Kind::TextMap, Json::Object(m)) => m
                .values()
                .all(|v| v.is_string() || v.is_number() || v.is_null()),
            _ => false,
        };
        if !ok {
            let shown = value.to_string();
            return Err(format!(
                "the facts answer's {name} is {}, not what setup gives",
                crate::text::prefix(&shown, 80)
            ));
        }
        let value = match (kind, value) {
            (Kind::Texts, Json::String(one)) => json!([one]),
            (Kind::Texts, Json::Null) => json!([]),
            (_, v) => v,
        };
        f.insert((*name).to_string(), value);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_fact_names_and_date_time() {
        assert_eq!(scan("{{ ansible_hostname }}"), (true, false));
        assert_eq!(scan("{{ ansible_facts['date_time'].epoch }}"), (true, true));
        assert_eq!(scan("{{ ansible_date_time.iso8601 }}"), (true, true));
        assert_eq!(
            scan("{{ ansible_managed }} {{ ansible_host }}"),
            (false, false)
        );
        assert_eq!(scan("{{ my_ansible_hostname }}"), (false, false));
        assert_eq!(scan("{{ ansible_hostnames }}"), (false, false));
    }

    /// Hosts share templates: a fleet reads each template (and what it includes) once, and a
    /// host that gets another template reads only that one.
    #[test]
    fn template_scans_read_each_file_once_for_the_fleet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.j2"), "{% include 'b.j2' %} {{ x }}").unwrap();
        std::fs::write(dir.path().join("b.j2"), "{{ ansible_hostname }}").unwrap();
        std::fs::write(dir.path().join("c.j2"), "{% include 'b.j2' %}").unwrap();
        let mut scans = TemplateScans::new(dir.path());
        for _host in 0..50 {
            let mut refs = References::default();
            scans.add("a.j2", &mut refs);
            assert!(refs.any, "the include's fact is seen through a.j2");
            assert_eq!(refs.first.as_deref(), Some("templates/b.j2"));
        }
        assert_eq!(scans.reads, 2, "a.j2 and b.j2, once for 50 hosts");
        let mut refs = References::default();
        scans.add("c.j2", &mut refs);
        assert!(refs.any);
        // c.j2 is new; its include is read again within c.j2's own scan.
        assert_eq!(scans.reads, 4);
        scans.add("c.j2", &mut References::default());
        assert_eq!(scans.reads, 4);
    }

    #[test]
    fn includes_are_found() {
        assert_eq!(
            included("{% include 'a.j2' %}{%- import \"b.j2\" as b %}{{ include }}"),
            vec!["a.j2".to_string(), "b.j2".to_string()]
        );
    }

    #[test]
    fn release_files_are_read_as_distro_reads_them() {
        let centos = vec![
            (
                "/etc/centos-release".to_string(),
                "CentOS release 6.7 (Final)\n".to_string(),
            ),
            (
                "/etc/redhat-release".to_string(),
                "CentOS release 6.7 (Final)\n".to_string(),
            ),
        ];
        let d = distribution("Linux", "", "", &centos);
        assert_eq!(d["distribution"], "CentOS");
        assert_eq!(d["distribution_version"], "6.7");
        assert_eq!(d["distribution_major_version"], "6");
        assert_eq!(d["distribution_release"], "Final");
        assert_eq!(d["os_family"], "RedHat");
        let fedora = vec![(
            "/etc/os-release".to_string(),
            "NAME=Fedora\nVERSION=\"31 (Workstation Edition)\"\nID=fedora\nVERSION_ID=31\nVERSION_CODENAME=\"\"\n".to_string(),
        )];
        let d = distribution("Linux", "", "", &fedora);
        assert_eq!(
            d["distribution_release"], "",
            "an empty VERSION_CODENAME is kept"
        );
        assert_eq!(d["distribution"], "Fedora");
    }

    #[test]
    fn python_rounding_and_utc_dates() {
        assert_eq!(py_round(1, 2), 0);
        assert_eq!(py_round(3, 2), 2);
        assert_eq!(py_round(2, 1), 2);
        assert_eq!(utc_fields(0).as_deref(), Some("1970-01-01T00:00:00"));
        assert_eq!(
            utc_fields(1_796_126_653).as_deref(),
            Some("2026-12-01T12:04:13")
        );
    }

    #[test]
    fn a_cut_or_foreign_answer_is_an_error() {
        assert!(parse_posix(b"hello").unwrap_err().contains("did not run"));
        let cut = b"deploy-facts 1\n\x1euname\nLinux\n";
        assert!(parse_posix(cut).unwrap_err().contains("cut short"));
    }

    #[test]
    fn this_machine_answers_its_own_script() {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(SH_SCRIPT)
            .output()
            .expect("sh");
        let facts = parse_posix(&out.stdout).expect("facts");
        assert_eq!(facts["system"], "Linux");
        assert!(facts["processor_vcpus"].as_u64().unwrap_or(0) >= 1);
        assert!(
            facts["date_time"]["iso8601"]
                .as_str()
                .unwrap_or("")
                .ends_with('Z')
        );
    }
}
