//! A YAML (or JSON) inventory file -> groups, hosts and their vars, read as ansible-core's
//! `plugins/inventory/yaml.py` reads it: top-level keys are groups (usually `all`), each a
//! mapping of `hosts` (names or ranges like `web[01:03]`, with an optional `:port`, each
//! mapping to its vars), `vars` and `children` (groups, recursively). A section written as a
//! string names one entry (`hosts: web01`).

use std::path::Path;

use serde_json::Value;

use super::{Parsed, Vars, hostpattern};
use crate::error::Error;

/// What a YAML file turned out to hold.
pub enum Read {
    /// A YAML inventory; its groups and hosts were added.
    Inventory,
    /// Valid YAML, but no mapping (Ansible then tries the file as INI).
    NotAMapping,
}

/// Adds the YAML inventory `doc` (parsed from `file`) to `parsed`.
pub fn parse(file: &Path, doc: &Value, parsed: &mut Parsed) -> Result<Read, Error> {
    let Value::Object(top) = doc else {
        return Ok(Read::NotAMapping);
    };
    if let Some(plugin) = top.get("plugin").filter(|p| !p.is_null()) {
        return Err(Error::config(
            file.display(),
            format!("this is the configuration of the inventory plugin {plugin}, not an inventory"),
        )
        .with_hint("deploy reads YAML and INI inventories; export a plugin's hosts with `ansible-inventory -i FILE --list -y`"));
    }
    for (name, body) in top {
        parse_group(file, parsed, name, body, name)?;
    }
    Ok(Read::Inventory)
}

fn parse_group(
    file: &Path,
    parsed: &mut Parsed,
    name: &str,
    body: &Value,
    path: &str,
) -> Result<(), Error> {
    super::check_name(file, path, name)?;
    parsed.add_group(name);
    let body = match body {
        Value::Null => return Ok(()),
        Value::Object(map) => map,
        _ => {
            return Err(Error::config(
                format!("{}: {path}", file.display()),
                "a group is a mapping with `hosts`, `vars` and `children`",
            ));
        }
    };
    for (key, value) in body {
        let section = |what: &str| -> Result<Vars, Error> {
            match value {
                Value::Null => Ok(Vars::new()),
                // Ansible: "convert strings to dicts as these are allowed".
                Value::String(s) => Ok(Vars::from_iter([(s.clone(), Value::Null)])),
                Value::Object(map) => Ok(map.clone()),
                _ => Err(Error::config(
                    format!("{}: {path}.{key}", file.display()),
                    format!("`{key}` is a mapping of {what}"),
                )),
            }
        };
        match key.as_str() {
            "vars" => {
                for (k, v) in section("variables")? {
                    parsed.set_group_var(name, &k, v);
                }
            }
            "hosts" => {
                for (pattern, vars) in section("host names to their vars")? {
                    let at = format!("{path}.hosts.{pattern}");
                    let vars = super::as_vars(file, &at, &vars)?;
                    let (hosts, port) = hostpattern::expand(&pattern)
                        .map_err(|e| Error::config(format!("{}: {at}", file.display()), e))?;
                    for host in hosts {
                        super::check_name(file, &format!("{path}.hosts"), &host)?;
                        parsed.add_host(&host, Some(name), port);
                        for (k, v) in &vars {
                            parsed.set_host_var(&host, k, v.clone());
                        }
                    }
                }
            }
            "children" => {
                for (child, child_body) in section("group names")? {
                    parse_group(
                        file,
                        parsed,
                        &child,
                        &child_body,
                        &format!("{path}.children.{child}"),
                    )?;
                    parsed.add_child(name, &child).map_err(|e| {
                        Error::config(format!("{}: {path}.children", file.display()), e)
                    })?;
                }
            }
            other => {
                return Err(Error::config(
                    format!("{}: {path}", file.display()),
                    format!("unknown key `{other}` in group `{name}`"),
                )
                .with_hint("a group has only `hosts`, `vars` and `children`"));
            }
        }
    }
    Ok(())
}
