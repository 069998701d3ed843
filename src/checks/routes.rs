//! LiteLLM routes against the vLLM hosts they point at: a route (an entry of a rendered
//! file's `model_list`) whose `litellm_params.api_base` names an inventory host (its name or
//! `ansible_host`) that renders a vLLM config (a file whose YAML has a `vllm:` mapping) must
//! agree with that config, each disagreement its own failure:
//!
//! - `litellm-route-api-base`: scheme `http` (the template and Start-VLLM.ps1 give vLLM no
//!   TLS flag; LiteLLM's TLS handshake with a plain-http server is a "Connection error"),
//!   port = `vllm.port` (vLLM's default 8000 when unset; what Start-VLLM.ps1 publishes),
//!   path `/v1` or `/v1/` (LiteLLM's openai and hosted_vllm providers append
//!   `/chat/completions` to it; vLLM's OpenAI server answers 404 anywhere but under `/v1`).
//! - `litellm-route-served-name`: `model` is `openai/<served name>` (or `hosted_vllm/...`),
//!   the served name being `served_model_name`, else `model` (what vLLM serves without
//!   `--served-model-name`). The seeds' 404.
//!
//! A route whose host renders no vLLM config (another service of the fleet, a host deploy
//! does not manage) is left alone, with a note saying so.

use serde_json::Value as Json;

use super::{Failure, Note, Report};
use crate::desired::HostDesired;

pub const API_BASE_CHECK: &str = "litellm-route-api-base";
pub const SERVED_NAME_CHECK: &str = "litellm-route-served-name";

/// What a host's rendered vLLM config says it serves, and where.
pub(super) struct VllmServer {
    host: String,
    address: String,
    file: String,
    port: u16,
    /// `vllm.port`, or a word that it is unset (vLLM's default then).
    port_key: &'static str,
    served: String,
    /// `vllm.served_model_name`, or `vllm.model` when no served name is set.
    served_key: &'static str,
}

/// Every vLLM server of the inventory, found by the host a route names: its `ansible_host`
/// or its inventory name, ASCII case ignored. Built once per run, so looking up a route
/// costs the same whatever the fleet's size (a scan of every server per route made the
/// checks quadratic in the number of hosts).
pub(super) struct Servers {
    all: Vec<VllmServer>,
    /// Lowercased address or host name -> indexes into `all`, in order.
    by_name: std::collections::HashMap<String, Vec<usize>>,
}

impl Servers {
    pub(super) fn new(all: Vec<VllmServer>) -> Servers {
        let mut by_name: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, s) in all.iter().enumerate() {
            let address = s.address.to_ascii_lowercase();
            let host = s.host.to_ascii_lowercase();
            if host != address {
                by_name.entry(host).or_default().push(i);
            }
            by_name.entry(address).or_default().push(i);
        }
        Servers { all, by_name }
    }

    /// The servers whose address or host name is `name` (ASCII case ignored), in the order
    /// they were found.
    fn on_host(&self, name: &str) -> Vec<&VllmServer> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(|ix| ix.iter().map(|&i| &self.all[i]).collect())
            .unwrap_or_default()
    }
}

/// vLLM's `--port` default, and Start-VLLM.ps1's container port.
const VLLM_DEFAULT_PORT: u16 = 8000;

/// The vLLM configs among a host's parsed files.
pub(super) fn vllm_servers(host: &HostDesired, files: &[(&str, Json)]) -> Vec<VllmServer> {
    let address = match host.vars.get_attr("ansible_host") {
        Ok(v) if v.as_str().is_some() => v.as_str().unwrap_or_default().to_string(),
        _ => host.host.clone(),
    };
    files
        .iter()
        .filter_map(|(dest, value)| {
            let vllm = value.get("vllm")?.as_object()?;
            let (served, served_key) = match vllm.get("served_model_name").and_then(Json::as_str) {
                Some(s) if !s.is_empty() => (s, "vllm.served_model_name"),
                _ => (vllm.get("model")?.as_str()?, "vllm.model"),
            };
            let (port, port_key) = match vllm.get("port") {
                Some(Json::Number(n)) => {
                    (n.as_u64().and_then(|n| u16::try_from(n).ok())?, "vllm.port")
                }
                Some(Json::String(s)) => (s.trim().parse().ok()?, "vllm.port"),
                None => (VLLM_DEFAULT_PORT, "vllm.port unset: vLLM's default"),
                Some(_) => return None,
            };
            Some(VllmServer {
                host: host.host.clone(),
                address: address.clone(),
                file: dest.to_string(),
                port,
                port_key,
                served: served.to_string(),
                served_key,
            })
        })
        .collect()
}

/// An `http://` or `https://` URL taken apart as LiteLLM's client uses it.
#[derive(Debug, PartialEq, Eq)]
pub struct Url<'a> {
    /// `http` or `https`, lowercased.
    pub scheme: String,
    /// As written (brackets of an IPv6 address removed).
    pub host: &'a str,
    /// The explicit port, else the scheme's default.
    pub port: u16,
    /// Everything from the first `/` after the authority up to `?` or `#`; "" when none.
    pub path: &'a str,
}

/// Splits an absolute http(s) URL; `None` for anything else (including a bad port).
pub fn parse_url(url: &str) -> Option<Url<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let after = &rest[end..];
    let path = &after[..after.find(['?', '#']).unwrap_or(after.len())];
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some(Url {
        scheme,
        host,
        port,
        path,
    })
}

/// LiteLLM providers that speak OpenAI's API to an `api_base` ending in `/v1`.
const PROVIDERS: [&str; 2] = ["openai/", "hosted_vllm/"];

/// One route of a `model_list` with an `api_base`: what [`check`] reads of it, so that the
/// parsed config need not be kept until every host's vLLM servers are known.
pub(super) struct Route {
    /// Its index in `model_list`.
    index: usize,
    /// `model_name`, or `?`.
    name: String,
    api_base: String,
    /// `litellm_params.model`.
    model: Option<String>,
}

/// The routes of a `model_list` that have an `api_base`, in order.
pub(super) fn routes(list: &[Json]) -> Vec<Route> {
    list.iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            let params = entry.get("litellm_params");
            let api_base = params?.get("api_base")?.as_str()?;
            Some(Route {
                index,
                name: entry
                    .get("model_name")
                    .and_then(Json::as_str)
                    .unwrap_or("?")
                    .to_string(),
                api_base: api_base.to_string(),
                model: params
                    .and_then(|p| p.get("model"))
                    .and_then(Json::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

pub(super) fn check(
    host: &HostDesired,
    dest: &str,
    routes: &[Route],
    servers: &Servers,
    report: &mut Report,
) {
    for r in routes {
        let (i, route, api_base) = (r.index, r.name.as_str(), r.api_base.as_str());
        let key = format!("model_list[{i}].litellm_params.api_base");
        let mut note = |text: String| {
            report.notes.push(Note {
                check: API_BASE_CHECK.into(),
                host: host.host.clone(),
                file: dest.to_string(),
                key: key.clone(),
                text,
            })
        };
        if api_base.starts_with("os.environ/") {
            note(format!(
                "route `{route}` reads its api_base from {api_base}: not checked against a vLLM host"
            ));
            continue;
        }
        let Some(url) = parse_url(api_base) else {
            note(format!(
                "route `{route}`: api_base `{api_base}` is no http(s) URL: not checked against a vLLM host"
            ));
            continue;
        };
        let on_host = servers.on_host(url.host);
        let Some(server) = on_host
            .iter()
            .find(|s| s.port == url.port)
            .or(on_host.first())
        else {
            note(format!(
                "route `{route}` points at {}:{}, where no inventory host renders a vLLM config (a file with a `vllm:` mapping): left alone",
                url.host, url.port
            ));
            continue;
        };
        report.evaluated += 2;
        let shown_host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.to_string()
        };
        let expected_base = format!("http://{shown_host}:{}/v1", server.port);
        let mut fail = |problem: String| {
            report.failures.push(Failure {
                check: API_BASE_CHECK.into(),
                host: host.host.clone(),
                file: Some(dest.to_string()),
                key: Some(key.clone()),
                problem,
                expected: Some(expected_base.clone()),
            })
        };
        let vllm = format!("{}'s vLLM ({})", server.host, server.file);
        if url.scheme != "http" {
            fail(format!(
                "route `{route}` speaks {} to {}:{}, but {vllm} serves plain http (no TLS flag in its config): LiteLLM's TLS handshake fails and every request is a 500 \"Connection error\"",
                url.scheme, url.host, url.port
            ));
        }
        if url.port != server.port {
            let ports: Vec<String> = on_host.iter().map(|s| s.port.to_string()).collect();
            fail(format!(
                "route `{route}` goes to port {} of {}, but {vllm} listens on {} ({}): nothing answers there, so every request is a 500 \"Connection error\"",
                url.port,
                url.host,
                ports.join(", "),
                server.port_key
            ));
        }
        if url.path != "/v1" && url.path != "/v1/" {
            let shown = if url.path.is_empty() {
                "no path".to_string()
            } else {
                format!("path `{}`", url.path)
            };
            fail(format!(
                "route `{route}` has {shown}, but vLLM's OpenAI server serves under /v1: LiteLLM posts to {}/chat/completions, which vLLM answers 404",
                url.path.trim_end_matches('/')
            ));
        }
        check_model(
            host,
            dest,
            i,
            route,
            r.model.as_deref(),
            server,
            url.host,
            report,
        );
    }
}

/// `litellm-route-served-name`: the route asks the vLLM for the name it serves.
#[allow(clippy::too_many_arguments)]
fn check_model(
    host: &HostDesired,
    dest: &str,
    i: usize,
    route: &str,
    model: Option<&str>,
    server: &VllmServer,
    url_host: &str,
    report: &mut Report,
) {
    let provider = model
        .and_then(|m| PROVIDERS.iter().find(|p| m.starts_with(*p)))
        .copied()
        .unwrap_or(PROVIDERS[0]);
    let expected = format!("{provider}{}", server.served);
    if model == Some(expected.as_str()) {
        return;
    }
    let asked = model.map(|m| {
        PROVIDERS
            .iter()
            .fold(m, |m, p| m.strip_prefix(p).unwrap_or(m))
    });
    let asks = match asked {
        Some(m) => format!("asks for `{m}`"),
        None => "has no `model`".to_string(),
    };
    let mut problem = format!(
        "route `{route}` {asks} at {}:{}, but {}'s vLLM serves `{}` ({}: {})",
        url_host.to_ascii_lowercase(),
        server.port,
        server.host,
        server.served,
        server.file,
        server.served_key
    );
    if asked == Some(server.served.as_str()) {
        problem.push_str(&format!(
            "; without a provider prefix LiteLLM does not know how to call it (use {provider})"
        ));
    } else if server.served_key == "vllm.model" {
        problem
            .push_str("; without served_model_name vLLM serves the model's path, so requests 404");
        if let Some(m) = asked {
            problem.push_str(&format!(
                " (or set served_model_name: {m} in {}'s vLLM config)",
                server.host
            ));
        }
    } else {
        problem.push_str("; vLLM answers 404 for any other name");
    }
    report.failures.push(Failure {
        check: SERVED_NAME_CHECK.into(),
        host: host.host.clone(),
        file: Some(dest.to_string()),
        key: Some(format!("model_list[{i}].litellm_params.model")),
        problem,
        expected: Some(expected),
    });
}

#[cfg(test)]
mod tests {
    use super::{Servers, Url, VllmServer, parse_url};

    fn server(host: &str, address: &str, port: u16) -> VllmServer {
        VllmServer {
            host: host.into(),
            address: address.into(),
            file: "/opt/vllm/config.yml".into(),
            port,
            port_key: "vllm.port",
            served: "m".into(),
            served_key: "vllm.model",
        }
    }

    /// The index finds what a scan of every server found: the servers whose address or
    /// inventory name is the route's host, ASCII case ignored, each once, in order.
    #[test]
    fn servers_by_host_or_address() {
        let servers = Servers::new(vec![
            server("gpu1", "10.0.0.1", 8000),
            server("gpu2", "GPU1", 8001),
            server("gpu1", "10.0.0.1", 8002),
            server("Box", "box", 8003),
        ]);
        let ports =
            |name: &str| -> Vec<u16> { servers.on_host(name).iter().map(|s| s.port).collect() };
        assert_eq!(ports("gpu1"), [8000, 8001, 8002]);
        assert_eq!(ports("10.0.0.1"), [8000, 8002]);
        assert_eq!(ports("BOX"), [8003]);
        assert_eq!(ports("gpu3"), Vec::<u16>::new());
    }

    fn url(
        scheme: &str,
        host: &'static str,
        port: u16,
        path: &'static str,
    ) -> Option<Url<'static>> {
        Some(Url {
            scheme: scheme.into(),
            host,
            port,
            path,
        })
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://Wintermute:8000/v1"),
            url("http", "Wintermute", 8000, "/v1")
        );
        assert_eq!(parse_url("HTTPS://x/v1/"), url("https", "x", 443, "/v1/"));
        assert_eq!(parse_url("http://x"), url("http", "x", 80, ""));
        assert_eq!(parse_url("http://x:1?a=/v1"), url("http", "x", 1, ""));
        assert_eq!(parse_url("http://[::1]:9/"), url("http", "::1", 9, "/"));
        assert_eq!(parse_url("http://u:p@h:1/a#b"), url("http", "h", 1, "/a"));
        assert_eq!(parse_url("os.environ/X"), None);
        assert_eq!(parse_url("ftp://h/"), None);
        assert_eq!(parse_url("http://h:notaport/"), None);
        assert_eq!(parse_url("http://:80/"), None);
    }
}
