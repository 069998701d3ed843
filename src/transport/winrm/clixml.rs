//! PowerShell's CLIXML on stderr -> plain text for the operator.
//!
//! In: a command's stderr bytes. Out: the same bytes, except that a `#< CLIXML` document
//! (what powershell.exe writes to a redirected stderr) becomes the text of its error
//! records (`<S S="Error">`), one per line, with `_xHHHH_` escapes undone. Progress records
//! (`<Obj S="progress">`) and other streams (verbose, debug, warning) are dropped: they are
//! not errors, and PowerShell sends progress even when nothing went wrong.

use super::wsman::Element;

const MARKER: &str = "#< CLIXML";

/// Decodes CLIXML in `stderr`; anything else is returned unchanged.
pub fn decode_stderr(stderr: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(stderr);
    let Some(start) = text.find(MARKER) else {
        return stderr.to_vec();
    };
    let mut out = text[..start].to_string();
    let mut rest = &text[start + MARKER.len()..];
    // Several documents may follow one another (one per write to stderr).
    while let Some(open) = rest.find("<Objs") {
        let Some(close) = rest[open..].find("</Objs>") else {
            // Cut off: keep what we have rather than lose the words.
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let doc = &rest[open..open + close + "</Objs>".len()];
        match Element::parse(doc) {
            Ok(objs) => {
                for s in objs
                    .children
                    .iter()
                    .filter(|c| c.name == "S" && c.attr("S") == Some("Error"))
                {
                    out.push_str(&unescape(&s.text));
                }
            }
            Err(_) => out.push_str(doc),
        }
        rest = &rest[open + close + "</Objs>".len()..];
        rest = rest.trim_start_matches(['\r', '\n']);
        if let Some(next) = rest.strip_prefix(MARKER) {
            rest = next;
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Undoes CLIXML's `_xHHHH_` escapes (UTF-16 code units; pairs make one character).
pub fn unescape(s: &str) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < s.len() {
        if bytes[i] == b'_'
            && i + 7 <= s.len()
            && bytes[i + 1] == b'x'
            && bytes[i + 6] == b'_'
            && let Ok(unit) = u16::from_str_radix(&s[i + 2..i + 6], 16)
        {
            units.push(unit);
            i += 7;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        let mut buf = [0u16; 2];
        units.extend_from_slice(ch.encode_utf16(&mut buf));
        i += ch.len_utf8();
    }
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\"><AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj><S S=\"Error\">Start-VLLM.ps1 not found_x000D__x000A_</S><S S=\"Error\">second line_x000D__x000A_</S></Objs>";

    #[test]
    fn errors_are_text_and_progress_is_dropped() {
        let out = String::from_utf8(decode_stderr(SAMPLE.as_bytes())).expect("utf8");
        assert_eq!(out, "Start-VLLM.ps1 not found\r\nsecond line\r\n");
    }

    #[test]
    fn plain_stderr_is_unchanged() {
        assert_eq!(decode_stderr(b"plain error\n"), b"plain error\n".to_vec());
    }

    #[test]
    fn surrogate_pairs_and_underscores() {
        assert_eq!(unescape("a_xD83D__xDE00_b_c_x005F_"), "a\u{1F600}b_c_");
    }
}
