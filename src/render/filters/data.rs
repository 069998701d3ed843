//! Ansible's data-structure filters (`core.py`, `mathstuff.py`): (lists, dicts, arguments) ->
//! new lists and dicts, as ansible-core 2.19 builds them.
//!
//! Set operations (`union`, `intersect`, `difference`, `symmetric_difference`) keep the
//! order in which items first appear. Ansible builds a Python `set` and lists it, an order
//! that for strings changes from one run to the next (hash randomisation); a stable order is
//! the one that can be diffed.

use minijinja::value::{Kwargs, Rest, Tuple, ValueKind};
use minijinja::{Error, Value};

use super::invalid;
use crate::render::pyfmt::{py_repr, py_str};

/// The items of a list-like value (a string gives its characters, a dict its keys, as
/// Python iterates them).
pub(super) fn items(v: &Value, filter: &str) -> Result<Vec<Value>, Error> {
    match v.kind() {
        ValueKind::String => Ok(v
            .as_str()
            .unwrap_or_default()
            .chars()
            .map(|c| Value::from(c.to_string()))
            .collect()),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => Ok(v.try_iter()?.collect()),
        ValueKind::Undefined => Err(Error::from(minijinja::ErrorKind::UndefinedError)),
        kind => Err(invalid(format!(
            "{filter}: expected a list, got {} ({kind})",
            py_repr(v)
        ))),
    }
}

fn is_sequence(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable)
}

fn contains(list: &[Value], v: &Value) -> bool {
    list.iter().any(|x| x == v)
}

/// `unique` in first-appearance order; `case_sensitive=False` and `attribute` as Jinja2's.
pub(super) fn unique(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let case_sensitive = kwargs
        .get::<Option<bool>>("case_sensitive")?
        .unwrap_or(false);
    let attribute: Option<Value> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    let mut seen: Vec<Value> = Vec::new();
    let mut out = Vec::new();
    for item in items(&v, "unique")? {
        let mut key = match &attribute {
            Some(a) => get_path(&item, a)?,
            None => item.clone(),
        };
        if !case_sensitive && let Some(s) = key.as_str() {
            key = Value::from(s.to_lowercase());
        }
        if !contains(&seen, &key) {
            seen.push(key);
            out.push(item);
        }
    }
    Ok(Value::from(out))
}

fn dedup(list: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for x in list {
        if !contains(&out, &x) {
            out.push(x);
        }
    }
    out
}

pub(super) fn union(a: Value, b: Value) -> Result<Value, Error> {
    let mut all = items(&a, "union")?;
    all.extend(items(&b, "union")?);
    Ok(Value::from(dedup(all)))
}

pub(super) fn intersect(a: Value, b: Value) -> Result<Value, Error> {
    let b = items(&b, "intersect")?;
    let keep = items(&a, "intersect")?
        .into_iter()
        .filter(|x| contains(&b, x))
        .collect();
    Ok(Value::from(dedup(keep)))
}

pub(super) fn difference(a: Value, b: Value) -> Result<Value, Error> {
    let b = items(&b, "difference")?;
    let keep = items(&a, "difference")?
        .into_iter()
        .filter(|x| !contains(&b, x))
        .collect();
    Ok(Value::from(dedup(keep)))
}

pub(super) fn symmetric_difference(a: Value, b: Value) -> Result<Value, Error> {
    let a = items(&a, "symmetric_difference")?;
    let b = items(&b, "symmetric_difference")?;
    let mut all = a.clone();
    all.extend(b.iter().cloned());
    let keep = all
        .into_iter()
        .filter(|x| !(contains(&a, x) && contains(&b, x)))
        .collect();
    Ok(Value::from(dedup(keep)))
}

/// `flatten(levels=None, skip_nulls=True)`.
pub(super) fn flatten(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let levels: Option<i64> = kwargs.get("levels")?;
    let skip_nulls = kwargs.get::<Option<bool>>("skip_nulls")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    flatten_into(&mut out, &items(&v, "flatten")?, levels, skip_nulls)?;
    Ok(Value::from(out))
}

fn flatten_into(
    out: &mut Vec<Value>,
    list: &[Value],
    levels: Option<i64>,
    skip_nulls: bool,
) -> Result<(), Error> {
    for el in list {
        if skip_nulls && (el.is_none() || matches!(el.as_str(), Some("None" | "null"))) {
            continue;
        }
        if is_sequence(el) {
            match levels {
                None => flatten_into(out, &el.try_iter()?.collect::<Vec<_>>(), None, skip_nulls)?,
                Some(n) if n >= 1 => flatten_into(
                    out,
                    &el.try_iter()?.collect::<Vec<_>>(),
                    Some(n - 1),
                    skip_nulls,
                )?,
                Some(_) => out.push(el.clone()),
            }
        } else {
            out.push(el.clone());
        }
    }
    Ok(())
}

/// `v[k]` when `v` is a dict holding `k`.
fn lookup(v: &Value, k: &Value) -> Option<Value> {
    v.get_item(k).ok().filter(|x| !x.is_undefined())
}

fn is_map(v: &Value) -> bool {
    v.kind() == ValueKind::Map
}

fn map_pairs(v: &Value) -> Result<Vec<(Value, Value)>, Error> {
    let mut out = Vec::new();
    for k in v.try_iter()? {
        let val = v.get_item(&k)?;
        out.push((k, val));
    }
    Ok(out)
}

fn set_key(pairs: &mut Vec<(Value, Value)>, k: Value, v: Value) {
    match pairs.iter_mut().find(|(x, _)| *x == k) {
        Some(slot) => slot.1 = v,
        None => pairs.push((k, v)),
    }
}

/// Ansible's `merge_hash(x, y, recursive, list_merge)`: y's keys win.
fn merge_hash(x: &Value, y: &Value, recursive: bool, list_merge: &str) -> Result<Value, Error> {
    if !is_map(x) || !is_map(y) {
        return Err(invalid(format!(
            "failed to combine variables, expected dicts but got a '{}' and a '{}': {} {}",
            super::core::type_name(x),
            super::core::type_name(y),
            py_repr(x),
            py_repr(y)
        )));
    }
    let mut out = map_pairs(x)?;
    for (k, yv) in map_pairs(y)? {
        let Some(xv) = out.iter().find(|(xk, _)| *xk == k).map(|(_, v)| v.clone()) else {
            out.push((k, yv));
            continue;
        };
        let merged = if is_map(&xv) && is_map(&yv) {
            if recursive {
                merge_hash(&xv, &yv, recursive, list_merge)?
            } else {
                yv
            }
        } else if xv.kind() == ValueKind::Seq && yv.kind() == ValueKind::Seq {
            let xl: Vec<Value> = xv.try_iter()?.collect();
            let yl: Vec<Value> = yv.try_iter()?.collect();
            let list: Vec<Value> = match list_merge {
                "replace" => yl,
                "keep" => xl,
                "append" => xl.into_iter().chain(yl).collect(),
                "prepend" => yl.into_iter().chain(xl).collect(),
                "append_rp" => xl
                    .into_iter()
                    .filter(|z| !contains(&yl, z))
                    .chain(yl.iter().cloned())
                    .collect(),
                _ => {
                    let rest: Vec<Value> = xl.into_iter().filter(|z| !contains(&yl, z)).collect();
                    yl.into_iter().chain(rest).collect()
                }
            };
            Value::from(list)
        } else {
            yv
        };
        set_key(&mut out, k, merged);
    }
    Ok(Value::from_pairs(out))
}

/// `combine(*dicts, recursive=False, list_merge='replace')`.
pub(super) fn combine(v: Value, rest: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let recursive = kwargs.get::<Option<bool>>("recursive")?.unwrap_or(false);
    let list_merge = kwargs
        .get::<Option<String>>("list_merge")?
        .unwrap_or_else(|| "replace".into());
    if kwargs.args().any(|a| a != "recursive" && a != "list_merge") {
        return Err(invalid(
            "'recursive' and 'list_merge' are the only valid keyword arguments",
        ));
    }
    if !matches!(
        list_merge.as_str(),
        "replace" | "keep" | "append" | "prepend" | "append_rp" | "prepend_rp"
    ) {
        return Err(invalid(
            "merge_hash: 'list_merge' argument can only be equal to 'replace', 'keep', 'append', 'prepend', 'append_rp' or 'prepend_rp'",
        ));
    }
    let mut dicts = Vec::new();
    for term in std::iter::once(v).chain(rest.0) {
        if is_sequence(&term) {
            dicts.extend(term.try_iter()?);
        } else {
            dicts.push(term);
        }
    }
    let mut it = dicts.into_iter();
    let Some(mut result) = it.next() else {
        return Ok(Value::from_pairs(Vec::<(Value, Value)>::new()));
    };
    for d in it {
        result = merge_hash(&result, &d, recursive, &list_merge)?;
    }
    Ok(result)
}

/// `items2dict(key_name='key', value_name='value')`.
pub(super) fn items2dict(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let key_name = kwargs
        .get::<Option<Value>>("key_name")?
        .unwrap_or(Value::from("key"));
    let value_name = kwargs
        .get::<Option<Value>>("value_name")?
        .unwrap_or(Value::from("value"));
    kwargs.assert_all_used()?;
    if !is_sequence(&v) {
        return Err(invalid(format!(
            "items2dict requires a list, got {} instead.",
            super::core::type_name(&v)
        )));
    }
    let mut out = Vec::new();
    for item in v.try_iter()? {
        if !is_map(&item) {
            return Err(invalid(format!(
                "items2dict requires a list of dictionaries, got {} instead.",
                py_repr(&v)
            )));
        }
        let (Some(k), Some(val)) = (lookup(&item, &key_name), lookup(&item, &value_name)) else {
            return Err(invalid(format!(
                "items2dict requires each dictionary in the list to contain the keys '{}' and '{}', got {} instead.",
                py_str(&key_name),
                py_str(&value_name),
                py_repr(&v)
            )));
        };
        set_key(&mut out, k, val);
    }
    Ok(Value::from_pairs(out))
}

/// `subelements(obj, 'a.b', skip_missing=False)`: (element, subelement) pairs.
pub(super) fn subelements(
    obj: Value,
    path: Value,
    skip_missing: Option<bool>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let skip_missing = kwargs
        .get::<Option<bool>>("skip_missing")?
        .or(skip_missing)
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let elements: Vec<Value> = match obj.kind() {
        ValueKind::Map => map_pairs(&obj)?.into_iter().map(|(_, v)| v).collect(),
        ValueKind::Seq => obj.try_iter()?.collect(),
        _ => return Err(invalid("obj must be a list of dicts or a nested dict")),
    };
    let keys: Vec<Value> = match path.kind() {
        ValueKind::Seq => path.try_iter()?.collect(),
        ValueKind::String => path
            .as_str()
            .unwrap_or_default()
            .split('.')
            .map(Value::from)
            .collect(),
        _ => return Err(invalid("subelements must be a list or a string")),
    };
    let mut out = Vec::new();
    'elements: for el in elements {
        let mut values = el.clone();
        for key in &keys {
            if !is_map(&values) {
                return Err(invalid(format!(
                    "the key {} should point to a dictionary, got '{}'",
                    py_str(key),
                    py_str(&values)
                )));
            }
            match lookup(&values, key) {
                Some(v) => values = v,
                None if skip_missing => continue 'elements,
                None => {
                    return Err(invalid(format!(
                        "could not find {} key in iterated item {}",
                        py_repr(key),
                        py_repr(&values)
                    )));
                }
            }
        }
        if values.kind() != ValueKind::Seq {
            return Err(invalid(format!(
                "the key {} should point to a list, got {}",
                py_repr(keys.last().unwrap_or(&Value::UNDEFINED)),
                py_repr(&values)
            )));
        }
        for v in values.try_iter()? {
            out.push(Value::from(Tuple::from(vec![el.clone(), v])));
        }
    }
    Ok(Value::from(out))
}

/// `extract(container, morekeys=None)`: `container[item]`, then each of `morekeys`.
pub(super) fn extract(
    item: Value,
    container: Value,
    morekeys: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let morekeys = kwargs.get::<Option<Value>>("morekeys")?.or(morekeys);
    kwargs.assert_all_used()?;
    let mut keys = vec![item];
    match morekeys {
        None => {}
        Some(m) if m.kind() == ValueKind::Seq => keys.extend(m.try_iter()?),
        Some(m) => keys.push(m),
    }
    let mut value = container;
    for key in keys {
        value = value.get_item(&key)?;
        if value.is_undefined() {
            return Err(Error::new(
                minijinja::ErrorKind::UndefinedError,
                format!("extract: no item {}", py_repr(&key)),
            ));
        }
    }
    Ok(value)
}

/// `rekey_on_member(key, duplicates='error')`.
pub(super) fn rekey_on_member(
    data: Value,
    key: Value,
    duplicates: Option<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let duplicates = kwargs.get::<Option<String>>("duplicates")?.or(duplicates);
    kwargs.assert_all_used()?;
    let duplicates = duplicates.unwrap_or_else(|| "error".into());
    if duplicates != "error" && duplicates != "overwrite" {
        return Err(invalid(format!(
            "duplicates parameter to rekey_on_member has unknown value {}",
            py_repr(&Value::from(duplicates))
        )));
    }
    let list: Vec<Value> = match data.kind() {
        ValueKind::Map => map_pairs(&data)?.into_iter().map(|(_, v)| v).collect(),
        ValueKind::Seq | ValueKind::Iterable => data.try_iter()?.collect(),
        _ => return Err(invalid("Type is not a valid list, set, or dict")),
    };
    let mut out: Vec<(Value, Value)> = Vec::new();
    for item in list {
        if !is_map(&item) {
            return Err(invalid("List item is not a valid dict"));
        }
        let Some(k) = lookup(&item, &key) else {
            return Err(invalid(format!("Key {} was not found.", py_repr(&key))));
        };
        if out.iter().any(|(x, _)| *x == k) && duplicates == "error" {
            return Err(invalid(format!(
                "Key {} is not unique, cannot convert to dict.",
                py_repr(&k)
            )));
        }
        set_key(&mut out, k, item);
    }
    Ok(Value::from_pairs(out))
}

fn lists(first: Value, rest: Rest<Value>, name: &str) -> Result<Vec<Vec<Value>>, Error> {
    std::iter::once(first)
        .chain(rest.0)
        .map(|v| items(&v, name))
        .collect()
}

/// Python's `zip(*lists)`: tuples, as long as the shortest.
pub(super) fn zip(first: Value, rest: Rest<Value>) -> Result<Value, Error> {
    let lists = lists(first, rest, "zip")?;
    let n = lists.iter().map(Vec::len).min().unwrap_or(0);
    Ok(Value::from(
        (0..n)
            .map(|i| {
                Value::from(Tuple::from(
                    lists.iter().map(|l| l[i].clone()).collect::<Vec<_>>(),
                ))
            })
            .collect::<Vec<_>>(),
    ))
}

/// `itertools.zip_longest(*lists, fillvalue=None)`.
pub(super) fn zip_longest(first: Value, rest: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let fill = kwargs
        .get::<Option<Value>>("fillvalue")?
        .unwrap_or(Value::from(()));
    kwargs.assert_all_used()?;
    let lists = lists(first, rest, "zip_longest")?;
    let n = lists.iter().map(Vec::len).max().unwrap_or(0);
    Ok(Value::from(
        (0..n)
            .map(|i| {
                Value::from(Tuple::from(
                    lists
                        .iter()
                        .map(|l| l.get(i).cloned().unwrap_or_else(|| fill.clone()))
                        .collect::<Vec<_>>(),
                ))
            })
            .collect::<Vec<_>>(),
    ))
}

/// Most tuples a combinatorial filter builds (a template asking for more is refused, not
/// left to exhaust memory).
const MAX_COMBINATIONS: usize = 100_000;

fn too_many(name: &str) -> Error {
    invalid(format!(
        "{name}: more than {MAX_COMBINATIONS} results; deploy refuses to build them"
    ))
}

/// `itertools.product(*lists, repeat=1)`.
pub(super) fn product(first: Value, rest: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let repeat = super::bounded(
        "product repeat",
        kwargs.get::<Option<usize>>("repeat")?.unwrap_or(1),
    )?;
    kwargs.assert_all_used()?;
    let base = lists(first, rest, "product")?;
    let mut pools = Vec::new();
    for _ in 0..repeat {
        pools.extend(base.iter().cloned());
    }
    let mut acc: Vec<Vec<Value>> = vec![Vec::new()];
    for pool in &pools {
        if acc.len().saturating_mul(pool.len()) > MAX_COMBINATIONS {
            return Err(too_many("product"));
        }
        acc = acc
            .iter()
            .flat_map(|prefix| {
                pool.iter().map(move |x| {
                    let mut t = prefix.clone();
                    t.push(x.clone());
                    t
                })
            })
            .collect();
    }
    Ok(Value::from(
        acc.into_iter()
            .map(|t| Value::from(Tuple::from(t)))
            .collect::<Vec<_>>(),
    ))
}

/// `itertools.permutations(list, r=None)`, in itertools' order.
pub(super) fn permutations(v: Value, r: Option<usize>, kwargs: Kwargs) -> Result<Value, Error> {
    let r = kwargs.get::<Option<usize>>("r")?.or(r);
    kwargs.assert_all_used()?;
    let pool = items(&v, "permutations")?;
    let n = pool.len();
    let r = r.unwrap_or(n);
    let mut out = Vec::new();
    if r > n {
        return Ok(Value::from(out));
    }
    // itertools' algorithm: indices and cycles.
    let mut indices: Vec<usize> = (0..n).collect();
    let mut cycles: Vec<usize> = (n - r + 1..=n).rev().collect();
    let emit = |indices: &[usize]| {
        Value::from(Tuple::from(
            indices[..r]
                .iter()
                .map(|&i| pool[i].clone())
                .collect::<Vec<_>>(),
        ))
    };
    out.push(emit(&indices));
    'outer: loop {
        if n == 0 {
            break;
        }
        for i in (0..r).rev() {
            cycles[i] -= 1;
            if cycles[i] == 0 {
                let moved = indices.remove(i);
                indices.push(moved);
                cycles[i] = n - i;
            } else {
                let j = cycles[i];
                indices.swap(i, n - j);
                if out.len() >= MAX_COMBINATIONS {
                    return Err(too_many("permutations"));
                }
                out.push(emit(&indices));
                continue 'outer;
            }
        }
        break;
    }
    Ok(Value::from(out))
}

/// `itertools.combinations(list, r)`, in itertools' order.
pub(super) fn combinations(v: Value, r: Option<usize>, kwargs: Kwargs) -> Result<Value, Error> {
    let r = kwargs
        .get::<Option<usize>>("r")?
        .or(r)
        .ok_or_else(|| invalid("combinations() missing required argument 'r'"))?;
    kwargs.assert_all_used()?;
    let pool = items(&v, "combinations")?;
    let n = pool.len();
    let mut out = Vec::new();
    if r > n {
        return Ok(Value::from(out));
    }
    let mut indices: Vec<usize> = (0..r).collect();
    let emit = |indices: &[usize]| {
        Value::from(Tuple::from(
            indices.iter().map(|&i| pool[i].clone()).collect::<Vec<_>>(),
        ))
    };
    out.push(emit(&indices));
    while let Some(i) = (0..r).rev().find(|&i| indices[i] != i + n - r) {
        indices[i] += 1;
        for j in i + 1..r {
            indices[j] = indices[j - 1] + 1;
        }
        if out.len() >= MAX_COMBINATIONS {
            return Err(too_many("combinations"));
        }
        out.push(emit(&indices));
    }
    Ok(Value::from(out))
}

/// `a.b.0` (Jinja2's `make_attrgetter`): attribute, then item, each dotted part; digits
/// index lists.
pub(super) fn get_path(item: &Value, path: &Value) -> Result<Value, Error> {
    let Some(p) = path.as_str() else {
        return item.get_item(path);
    };
    let mut cur = item.clone();
    for part in p.split('.') {
        let next = match part.parse::<i64>() {
            Ok(i) if cur.kind() == ValueKind::Seq => cur.get_item(&Value::from(i))?,
            _ => cur.get_attr(part)?,
        };
        cur = next;
    }
    Ok(cur)
}

/// Jinja2's `min`/`max(case_sensitive=False, attribute=None)`.
fn extreme(v: Value, kwargs: Kwargs, want: std::cmp::Ordering) -> Result<Value, Error> {
    let case_sensitive = kwargs
        .get::<Option<bool>>("case_sensitive")?
        .unwrap_or(false);
    let attribute: Option<Value> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    let mut best: Option<(Value, Value)> = None;
    for item in items(&v, "min/max")? {
        let mut key = match &attribute {
            Some(a) => get_path(&item, a)?,
            None => item.clone(),
        };
        if !case_sensitive && let Some(s) = key.as_str() {
            key = Value::from(s.to_lowercase());
        }
        let replace = match &best {
            None => true,
            Some((bk, _)) => crate::render::yaml::py_cmp(&key, bk) == want,
        };
        if replace {
            best = Some((key, item));
        }
    }
    Ok(best.map(|(_, v)| v).unwrap_or(Value::UNDEFINED))
}

pub(super) fn min(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    extreme(v, kwargs, std::cmp::Ordering::Less)
}

pub(super) fn max(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    extreme(v, kwargs, std::cmp::Ordering::Greater)
}

/// Python's `dict(mapping_or_pairs=(), **kwargs)` (minijinja's `dict` takes no pairs).
pub(super) fn dict(args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut out: Vec<(Value, Value)> = Vec::new();
    match args.0.as_slice() {
        [] => {}
        [one] if is_map(one) => out = map_pairs(one)?,
        [one] => {
            for (i, pair) in items(one, "dict")?.into_iter().enumerate() {
                let kv = items(&pair, "dict")?;
                let [k, v] = kv.as_slice() else {
                    return Err(invalid(format!(
                        "dictionary update sequence element #{i} has length {}; 2 is required",
                        kv.len()
                    )));
                };
                set_key(&mut out, k.clone(), v.clone());
            }
        }
        more => {
            return Err(invalid(format!(
                "dict expected at most 1 argument, got {}",
                more.len()
            )));
        }
    }
    for name in kwargs.args() {
        let v: Value = kwargs.get(name)?;
        set_key(&mut out, Value::from(name), v);
    }
    Ok(Value::from_pairs(out))
}

/// Jinja2's `map`: `map(attribute='a.b', default=None)` or `map('filter', *args, **kwargs)`.
/// minijinja's own drops the keyword arguments of a mapped filter
/// (`map('password_hash', 'sha512', 'salt', rounds=5000)` would lose `rounds`).
pub(super) fn map(
    state: &mut minijinja::State,
    value: Value,
    args: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let args = args.0;
    let mut pairs: Vec<(String, Value)> = Vec::new();
    for name in kwargs.args() {
        pairs.push((name.to_string(), kwargs.get::<Value>(name)?));
    }
    let kwarg = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let attribute = kwarg("attribute");
    let list = if value.is_none() {
        Vec::new()
    } else {
        items(&value, "map")?
    };
    if let Some(attribute) = attribute {
        if !args.is_empty() {
            return Err(invalid(
                "map: a filter name and `attribute` cannot both be given",
            ));
        }
        let default = kwarg("default");
        let mut out = Vec::new();
        for item in list {
            let v = get_path(&item, &attribute)?;
            out.push(match (&default, v.is_undefined()) {
                (Some(d), true) => d.clone(),
                _ => v,
            });
        }
        return Ok(Value::from(out));
    }
    let Some(name) = args.first().and_then(|n| n.as_str().map(String::from)) else {
        return Err(invalid(
            "map: a filter name (a string) or `attribute` is required",
        ));
    };
    let mut out = Vec::new();
    for item in list {
        let mut call = vec![item];
        call.extend(args.iter().skip(1).cloned());
        if !pairs.is_empty() {
            call.push(Value::from(pairs.iter().cloned().collect::<Kwargs>()));
        }
        out.push(state.apply_filter(&name, &call)?);
    }
    Ok(Value::from(out))
}
