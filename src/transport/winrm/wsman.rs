//! WS-Management envelopes for the WinRS shell, and parsing of the answers.
//!
//! In: what to ask (create a shell, start a command, send stdin, receive output, signal,
//! delete, read the service config). Out: the SOAP envelope text to POST, and from the
//! server's answer either the part that matters (shell id, command id, output chunk,
//! `MaxEnvelopeSizekb`) or a [`Fault`] (code, subcode, reason, WS-Man code, machine).
//!
//! Envelopes are built as text with every value XML-escaped; they follow the shape pypsrp
//! sends (the recordings in the tests were made with it). Answers are parsed with quick-xml
//! into a small element tree matched by local names, because servers differ in the prefixes
//! they use (`a:`/`wsa:`, `w:`/`wsman:`) and older ones use single quotes.

use base64::Engine;
use quick_xml::events::Event;

pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub const NS_WSMV: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
pub const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";

pub const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
pub const RESOURCE_CONFIG: &str = "http://schemas.microsoft.com/wbem/wsman/1/config";

pub const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
pub const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
pub const ACTION_GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
pub const ACTION_COMMAND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
pub const ACTION_SEND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send";
pub const ACTION_RECEIVE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
pub const ACTION_SIGNAL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";

pub const SIGNAL_TERMINATE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";
pub const SIGNAL_CTRL_C: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c";

const STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";

/// The WS-Man default `MaxEnvelopeSizekb` (150 KiB), used until the server's config says
/// otherwise.
pub const DEFAULT_MAX_ENVELOPE: usize = 150 * 1024;

/// Escapes text or an attribute value for XML (`&`, `<`, `>`, `"`, `'`).
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A parsed XML element: local name (prefix dropped), attributes by local name, text
/// (concatenated, unescaped) and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

/// How deep elements may nest in an answer (WS-Man answers and CLIXML error records go
/// about 10 deep); recursion over a tree this deep is cheap.
const MAX_DEPTH: usize = 256;

impl Element {
    /// Parses a whole document; its root element is returned. Nesting deeper than 256 is an
    /// error.
    pub fn parse(xml: &str) -> Result<Element, String> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| format!("bad XML at byte {}: {e}", reader.buffer_position()))?;
            match event {
                Event::Start(start) => {
                    // Walking, cloning and dropping an element recurse: bound the depth.
                    if stack.len() >= MAX_DEPTH {
                        return Err(format!("XML nested deeper than {MAX_DEPTH} elements"));
                    }
                    stack.push(element_of(&start)?)
                }
                Event::Empty(start) => {
                    let el = element_of(&start)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
                Event::End(_) => {
                    let el = stack.pop().ok_or("unbalanced XML end tag")?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
                Event::Text(text) => {
                    if let Some(current) = stack.last_mut() {
                        let text = text.unescape().map_err(|e| format!("bad XML text: {e}"))?;
                        current.text.push_str(&text);
                    }
                }
                Event::CData(data) => {
                    if let Some(current) = stack.last_mut() {
                        current
                            .text
                            .push_str(&String::from_utf8_lossy(&data.into_inner()));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err("XML ends inside an element".into());
        }
        root.ok_or_else(|| "no XML element in the answer".to_string())
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The element at `path` (local names, each a direct child of the one before).
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        let mut el = self;
        for name in path {
            el = el.child(name)?;
        }
        Some(el)
    }

    /// The first element named `name` anywhere below (depth first).
    pub fn find(&self, name: &str) -> Option<&Element> {
        for c in &self.children {
            if c.name == name {
                return Some(c);
            }
            if let Some(found) = c.find(name) {
                return Some(found);
            }
        }
        None
    }
}

fn local(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_string(),
        None => name.into_owned(),
    }
}

fn element_of(start: &quick_xml::events::BytesStart) -> Result<Element, String> {
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad XML attribute: {e}"))?;
        let key = attr.key.as_ref();
        if key.starts_with(b"xmlns") {
            continue;
        }
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad XML attribute value: {e}"))?;
        attrs.push((local(key), value.into_owned()));
    }
    Ok(Element {
        name: local(start.name().as_ref()),
        attrs,
        text: String::new(),
        children: Vec::new(),
    })
}

/// A SOAP fault from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `s:Sender` / `s:Receiver`.
    pub code: String,
    /// e.g. `w:TimedOut`, `w:InvalidSelectors`.
    pub subcode: String,
    pub reason: String,
    /// The WSManFault `Code` (a Windows error number), when given.
    pub wsman_code: Option<String>,
    pub machine: Option<String>,
    /// The innermost WSManFault or WMI error message, when it says more than `reason`.
    pub detail: Option<String>,
}

impl Fault {
    /// The `w:TimedOut` fault a Receive gets when the command printed nothing within the
    /// OperationTimeout: normal for a long command, and answered by asking again.
    pub fn is_timeout(&self) -> bool {
        self.subcode.ends_with(":TimedOut")
            || self.subcode == "TimedOut"
            || self.wsman_code.as_deref() == Some("2150858793")
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = if self.subcode.is_empty() {
            &self.code
        } else {
            &self.subcode
        };
        write!(f, "SOAP fault {code}")?;
        if let Some(n) = &self.wsman_code {
            write!(f, " (WS-Man code {n})")?;
        }
        write!(f, ": {}", collapse(&self.reason))?;
        if let Some(d) = &self.detail {
            let d = collapse(d);
            if d != collapse(&self.reason) {
                write!(f, " ({d})")?;
            }
        }
        Ok(())
    }
}

/// Whitespace runs made single spaces, ends trimmed (fault texts are wrapped and padded).
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A server answer that is not what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    Fault(Box<Fault>),
    /// Not XML, or XML without the expected parts.
    Malformed(String),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Fault(fault) => fault.fmt(f),
            AnswerError::Malformed(m) => write!(f, "unexpected answer: {m}"),
        }
    }
}

/// Parses an answer envelope; a `s:Fault` in its body becomes `AnswerError::Fault`.
/// Returns the `Body` element.
pub fn parse_answer(xml: &str) -> Result<Element, AnswerError> {
    let root = Element::parse(xml).map_err(AnswerError::Malformed)?;
    if root.name != "Envelope" {
        return Err(AnswerError::Malformed(format!(
            "root element is {}, not a SOAP Envelope",
            root.name
        )));
    }
    let body = root
        .child("Body")
        .ok_or_else(|| AnswerError::Malformed("no SOAP Body".into()))?;
    if let Some(fault) = body.child("Fault") {
        return Err(AnswerError::Fault(Box::new(fault_of(fault))));
    }
    Ok(body.clone())
}

fn fault_of(fault: &Element) -> Fault {
    let text = |path: &[&str]| fault.at(path).map(|e| e.text.trim().to_string());
    let wsman = fault.at(&["Detail", "WSManFault"]);
    // The innermost message says the most (a provider's own words); WMI errors carry theirs
    // in MSFT_WmiError/Message.
    let mut detail = None;
    if let Some(w) = wsman {
        let mut cur = w;
        while let Some(inner) = cur.find("WSManFault") {
            cur = inner;
        }
        if let Some(m) = cur.child("Message") {
            let mut text = m.text.trim().to_string();
            if text.is_empty()
                && let Some(pf) = m.find("ProviderFault")
            {
                text = pf.text.trim().to_string();
            }
            if !text.is_empty() {
                detail = Some(text);
            }
        }
    } else if let Some(m) = fault.at(&["Detail", "MSFT_WmiError", "Message"]) {
        detail = Some(m.text.trim().to_string());
    }
    Fault {
        code: text(&["Code", "Value"]).unwrap_or_default(),
        subcode: text(&["Code", "Subcode", "Value"]).unwrap_or_default(),
        reason: text(&["Reason", "Text"]).unwrap_or_default(),
        wsman_code: wsman.and_then(|w| w.attr("Code")).map(str::to_string),
        machine: wsman
            .and_then(|w| w.attr("Machine"))
            .filter(|m| !m.is_empty())
            .map(str::to_string),
        detail,
    }
}

/// What every envelope's header carries besides its action.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// The endpoint URL (`wsa:To`).
    pub to: &'a str,
    pub resource_uri: &'a str,
    pub message_id: &'a str,
    pub session_id: &'a str,
    pub max_envelope: usize,
    pub operation_timeout_s: u64,
}

/// Builds an envelope: `options` become the `wsman:OptionSet` (name, value, MustComply),
/// `selectors` the `wsman:SelectorSet`, `body` goes into `s:Body` as is (already XML).
pub fn envelope(
    action: &str,
    h: &Header,
    options: &[(&str, &str, bool)],
    selectors: &[(&str, &str)],
    body: &str,
) -> String {
    let mut x = String::with_capacity(1500 + body.len());
    x.push_str(&format!(
        r#"<s:Envelope xmlns:rsp="{NS_SHELL}" xmlns:s="{NS_SOAP}" xmlns:wsa="{NS_ADDRESSING}" xmlns:wsman="{NS_WSMAN}" xmlns:wsmv="{NS_WSMV}"><s:Header>"#
    ));
    x.push_str(&format!(
        r#"<wsa:Action s:mustUnderstand="true">{}</wsa:Action>"#,
        escape(action)
    ));
    x.push_str(r#"<wsmv:DataLocale s:mustUnderstand="false" xml:lang="en-US" /><wsman:Locale s:mustUnderstand="false" xml:lang="en-US" />"#);
    x.push_str(&format!(
        r#"<wsman:MaxEnvelopeSize s:mustUnderstand="true">{}</wsman:MaxEnvelopeSize>"#,
        h.max_envelope
    ));
    x.push_str(&format!(
        "<wsa:MessageID>uuid:{}</wsa:MessageID>",
        escape(h.message_id)
    ));
    x.push_str(&format!(
        "<wsman:OperationTimeout>PT{}S</wsman:OperationTimeout>",
        h.operation_timeout_s
    ));
    x.push_str(r#"<wsa:ReplyTo><wsa:Address s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:Address></wsa:ReplyTo>"#);
    x.push_str(&format!(
        r#"<wsman:ResourceURI s:mustUnderstand="true">{}</wsman:ResourceURI>"#,
        escape(h.resource_uri)
    ));
    x.push_str(&format!(
        r#"<wsmv:SessionId s:mustUnderstand="false">uuid:{}</wsmv:SessionId>"#,
        escape(h.session_id)
    ));
    x.push_str(&format!("<wsa:To>{}</wsa:To>", escape(h.to)));
    if !options.is_empty() {
        x.push_str(r#"<wsman:OptionSet s:mustUnderstand="true">"#);
        for (name, value, must_comply) in options {
            let comply = if *must_comply {
                r#" MustComply="true""#
            } else {
                ""
            };
            x.push_str(&format!(
                r#"<wsman:Option{comply} Name="{}">{}</wsman:Option>"#,
                escape(name),
                escape(value)
            ));
        }
        x.push_str("</wsman:OptionSet>");
    }
    if !selectors.is_empty() {
        x.push_str("<wsman:SelectorSet>");
        for (name, value) in selectors {
            x.push_str(&format!(
                r#"<wsman:Selector Name="{}">{}</wsman:Selector>"#,
                escape(name),
                escape(value)
            ));
        }
        x.push_str("</wsman:SelectorSet>");
    }
    x.push_str("</s:Header>");
    if body.is_empty() {
        x.push_str("<s:Body />");
    } else {
        x.push_str("<s:Body>");
        x.push_str(body);
        x.push_str("</s:Body>");
    }
    x.push_str("</s:Envelope>");
    x
}

/// Options of a new shell (`rsp:Shell` body and the Create's OptionSet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellOptions {
    /// `WINRS_CODEPAGE`, e.g. 65001 for UTF-8 output.
    pub codepage: Option<u32>,
    /// `WINRS_NOPROFILE`: do not load the user's profile.
    pub no_profile: bool,
    pub environment: Vec<(String, String)>,
    pub working_directory: Option<String>,
    /// `rsp:IdleTimeOut`, seconds.
    pub idle_timeout_s: Option<u64>,
    /// `rsp:Lifetime`, seconds.
    pub lifetime_s: Option<u64>,
    pub name: Option<String>,
}

impl ShellOptions {
    /// The Create's OptionSet entries.
    pub fn options(&self) -> Vec<(&'static str, String, bool)> {
        let mut o = Vec::new();
        if self.no_profile {
            o.push(("WINRS_NOPROFILE", "TRUE".to_string(), true));
        }
        if let Some(cp) = self.codepage {
            // Not MustComply: pypsrp and pywinrm send it plain, and old servers ignore it.
            o.push(("WINRS_CODEPAGE", cp.to_string(), false));
        }
        o
    }

    /// The `rsp:Shell` body.
    pub fn body(&self) -> String {
        let mut b = String::from(
            "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>",
        );
        if let Some(s) = self.idle_timeout_s {
            b.push_str(&format!("<rsp:IdleTimeOut>PT{s}S</rsp:IdleTimeOut>"));
        }
        if let Some(s) = self.lifetime_s {
            b.push_str(&format!("<rsp:Lifetime>PT{s}S</rsp:Lifetime>"));
        }
        if let Some(n) = &self.name {
            b.push_str(&format!("<rsp:Name>{}</rsp:Name>", escape(n)));
        }
        if let Some(d) = &self.working_directory {
            b.push_str(&format!(
                "<rsp:WorkingDirectory>{}</rsp:WorkingDirectory>",
                escape(d)
            ));
        }
        if !self.environment.is_empty() {
            b.push_str("<rsp:Environment>");
            for (k, v) in &self.environment {
                b.push_str(&format!(
                    r#"<rsp:Variable Name="{}">{}</rsp:Variable>"#,
                    escape(k),
                    escape(v)
                ));
            }
            b.push_str("</rsp:Environment>");
        }
        b.push_str("</rsp:Shell>");
        b
    }
}

/// The `rsp:CommandLine` body: the program and each argument as its own element.
pub fn command_body(command: &str, args: &[&str]) -> String {
    let mut b = format!(
        "<rsp:CommandLine><rsp:Command>{}</rsp:Command>",
        escape(command)
    );
    for a in args {
        b.push_str(&format!("<rsp:Arguments>{}</rsp:Arguments>", escape(a)));
    }
    b.push_str("</rsp:CommandLine>");
    b
}

/// The `rsp:Send` body: `data` base64-encoded on stdin; `end` closes stdin.
pub fn send_body(command_id: &str, data: &[u8], end: bool) -> String {
    let end = if end { "True" } else { "False" };
    format!(
        r#"<rsp:Send><rsp:Stream CommandId="{}" End="{end}" Name="stdin">{}</rsp:Stream></rsp:Send>"#,
        escape(command_id),
        base64::engine::general_purpose::STANDARD.encode(data)
    )
}

/// The `rsp:Receive` body; `command_id` `None` asks for the shell's own streams.
pub fn receive_body(command_id: Option<&str>) -> String {
    match command_id {
        Some(id) => format!(
            r#"<rsp:Receive><rsp:DesiredStream CommandId="{}">stdout stderr</rsp:DesiredStream></rsp:Receive>"#,
            escape(id)
        ),
        None => "<rsp:Receive><rsp:DesiredStream>stdout stderr</rsp:DesiredStream></rsp:Receive>"
            .to_string(),
    }
}

pub fn signal_body(command_id: &str, code: &str) -> String {
    format!(
        r#"<rsp:Signal CommandId="{}"><rsp:Code>{}</rsp:Code></rsp:Signal>"#,
        escape(command_id),
        escape(code)
    )
}

/// The shell id from a CreateResponse: the `ShellId` selector (every server version sends
/// it), else `rsp:Shell/rsp:ShellId`.
pub fn shell_id(body: &Element) -> Result<String, AnswerError> {
    let selector = body
        .find("SelectorSet")
        .and_then(|set| {
            set.children
                .iter()
                .find(|s| s.name == "Selector" && s.attr("Name") == Some("ShellId"))
        })
        .map(|s| s.text.trim().to_string());
    selector
        .or_else(|| {
            body.at(&["Shell", "ShellId"])
                .map(|e| e.text.trim().to_string())
        })
        .filter(|id| !id.is_empty())
        .ok_or_else(|| AnswerError::Malformed("the CreateResponse has no ShellId".into()))
}

pub fn command_id(body: &Element) -> Result<String, AnswerError> {
    body.at(&["CommandResponse", "CommandId"])
        .map(|e| e.text.trim().to_string())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| AnswerError::Malformed("the CommandResponse has no CommandId".into()))
}

/// What one ReceiveResponse carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The command has ended (CommandState Done).
    pub done: bool,
    pub exit_code: Option<i32>,
}

pub fn received(body: &Element) -> Result<Received, AnswerError> {
    let response = body
        .child("ReceiveResponse")
        .ok_or_else(|| AnswerError::Malformed("no ReceiveResponse".into()))?;
    let mut r = Received::default();
    for el in &response.children {
        match el.name.as_str() {
            "Stream" => {
                let text: String = el.text.split_whitespace().collect();
                if text.is_empty() {
                    continue;
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| AnswerError::Malformed(format!("output is not base64: {e}")))?;
                match el.attr("Name") {
                    Some("stderr") => r.stderr.extend_from_slice(&bytes),
                    _ => r.stdout.extend_from_slice(&bytes),
                }
            }
            "CommandState" => {
                if el.attr("State") == Some(STATE_DONE) {
                    r.done = true;
                }
                if let Some(code) = el.child("ExitCode") {
                    let text = code.text.trim();
                    // Exit codes arrive unsigned (e.g. 4294967295 for -1).
                    r.exit_code = text
                        .parse::<i32>()
                        .ok()
                        .or_else(|| text.parse::<u32>().ok().map(|u| u as i32));
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

/// `MaxEnvelopeSizekb` from a config GetResponse, in bytes.
pub fn max_envelope_size(body: &Element) -> Option<usize> {
    body.find("MaxEnvelopeSizekb")
        .and_then(|e| e.text.trim().parse::<usize>().ok())
        .and_then(|kb| kb.checked_mul(1024))
}

/// How many stdin bytes fit in one Send envelope of at most `max_envelope` bytes, given the
/// size of that envelope with no data (`overhead`): base64 makes 3 bytes 4, and a margin
/// is kept for the server's own accounting (it counts the envelope as it stores it).
pub fn send_chunk_size(max_envelope: usize, overhead: usize) -> usize {
    const MARGIN: usize = 1024;
    let room = max_envelope.saturating_sub(overhead + MARGIN);
    (room / 4 * 3).max(3 * 256)
}

/// A fresh random UUID text (uppercase, as Windows writes them).
pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixed_and_single_quoted_xml() {
        let el =
            Element::parse("<a:X xmlns:a='u' k='v &amp; w'><b>t&lt;</b><c/></a:X>").expect("parse");
        assert_eq!(el.name, "X");
        assert_eq!(el.attr("k"), Some("v & w"));
        assert_eq!(el.child("b").map(|b| b.text.as_str()), Some("t<"));
        assert!(el.child("c").is_some());
    }

    #[test]
    fn chunk_size_fits_the_envelope() {
        let n = send_chunk_size(DEFAULT_MAX_ENVELOPE, 1500);
        assert!(n / 3 * 4 + 1500 < DEFAULT_MAX_ENVELOPE);
        assert!(n > 100_000);
    }

    #[test]
    fn escapes_values() {
        let body = command_body("cmd.exe", &["/c echo a && echo <b>"]);
        assert!(body.contains("/c echo a &amp;&amp; echo &lt;b&gt;"));
        let parsed = Element::parse(&body).expect("parse");
        assert_eq!(
            parsed.child("Arguments").map(|a| a.text.as_str()),
            Some("/c echo a && echo <b>")
        );
    }
}
