//! The app's modules use one another in one direction only (ARCHITECTURE.md, "The app's
//! modules"): this test reads the sources and fails, naming the modules and what each uses
//! of the next, when an import closes a circle. Test modules count as well: a test that
//! reaches up a layer closes a circle just the same.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of the app by its path (`xr::boards`; `lib` for the crate root), with its
/// source, comments removed.
fn sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> =
                rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts.join("::"), code);
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The modules `module` uses, each with the names it uses there.
fn uses(
    module: &str,
    code: &str,
    modules: &BTreeSet<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |target: String, what: &str| {
        if target != module && modules.contains(&target) {
            out.entry(target).or_default().insert(what.to_owned());
        }
    };
    let parent = module.rsplit_once("::").map(|(p, _)| p.to_owned());
    let in_parent = |name: &str| match &parent {
        Some(p) => format!("{p}::{name}"),
        None => name.to_owned(),
    };
    // `crate::a::b::Item`: the longest module path it names.
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let mut path = Vec::new();
        let mut rest = &code[i + "crate::".len()..];
        loop {
            let id = ident_at(rest);
            if id.is_empty() {
                break;
            }
            path.push(id);
            match rest[id.len()..].strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        if let Some(n) = (1..=path.len()).rev().find(|&n| modules.contains(&path[..n].join("::"))) {
            add(path[..n].join("::"), path.get(n).copied().unwrap_or("(the module)"));
        }
    }
    // `super::x` or `super::{x, y}`: a sibling module, or an item of the parent.
    for (i, _) in code.match_indices("super::") {
        let rest = &code[i + "super::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|s| !s.is_empty())
                .collect(),
            None => vec![ident_at(rest)],
        };
        for name in names {
            if name == "self" || name.is_empty() {
                continue;
            }
            let sibling = in_parent(name);
            if modules.contains(&sibling) {
                add(sibling, name);
            } else if let Some(p) = &parent {
                add(p.clone(), name);
            } else {
                add("lib".into(), name);
            }
        }
    }
    // `child::Item` from a parent.
    let prefix = if module == "lib" { String::new() } else { format!("{module}::") };
    for child in modules.iter().filter_map(|m| m.strip_prefix(&prefix)) {
        if child.contains("::") || child.is_empty() {
            continue;
        }
        let pattern = format!("{child}::");
        for (i, _) in code.match_indices(&pattern) {
            let before = &code[..i];
            let rooted = before.ends_with("crate::") || before.ends_with("super::");
            if rooted || before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            add(format!("{prefix}{child}"), ident_at(&code[i + pattern.len()..]));
        }
    }
    out
}

/// Strongly connected components of more than one module (Tarjan's algorithm).
fn circles(edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let i = w.index.len();
        w.index.insert(v, i);
        w.low.insert(v, i);
        w.stack.push(v);
        for u in w.edges[v].keys() {
            let u = u.as_str();
            if !w.index.contains_key(u) {
                visit(w, u);
                let l = w.low[v].min(w.low[u]);
                w.low.insert(v, l);
            } else if w.stack.contains(&u) {
                let l = w.low[v].min(w.index[u]);
                w.low.insert(v, l);
            }
        }
        if w.low[v] == w.index[v] {
            let mut c = Vec::new();
            while let Some(u) = w.stack.pop() {
                c.push(u.to_owned());
                if u == v {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                w.out.push(c);
            }
        }
    }
    let mut w = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: vec![],
    };
    for v in edges.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.out
}

fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let sources = sources();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        // The crate root declares every module and holds the shared system sets; `main` is a
        // separate crate; this file only names paths.
        .filter(|(m, _)| !["lib", "main", "layers"].contains(&m.as_str()))
        .map(|(m, code)| {
            let mut used = uses(m, code, &modules);
            used.remove("lib");
            (m.clone(), used)
        })
        .collect()
}

fn describe(
    edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    circle: &[String],
) -> String {
    let mut s = format!("a circle of {} modules:\n", circle.len());
    for a in circle {
        for (b, what) in &edges[a] {
            if circle.contains(b) {
                let what: Vec<&str> = what.iter().map(String::as_str).collect();
                s.push_str(&format!("  {a} uses {b}: {}\n", what.join(", ")));
            }
        }
    }
    s
}

#[test]
fn no_module_of_the_app_uses_one_that_uses_it_back() {
    let edges = graph();
    assert!(edges.len() > 25, "the sources were found: {:?}", edges.keys());
    // What the reader would catch: the feature modules use their vocabulary below them.
    assert!(edges["render"].contains_key("notes"), "{:?}", edges["render"]);
    assert!(edges["xr::boards"].contains_key("xr::input"), "{:?}", edges["xr::boards"]);
    assert!(edges["xr"].contains_key("xr::boards"), "{:?}", edges["xr"]);
    let found = circles(&edges);
    let text: Vec<String> = found.iter().map(|c| describe(&edges, c)).collect();
    assert!(found.is_empty(), "{}", text.join("\n"));
}

#[test]
fn the_circle_check_finds_a_circle() {
    let modules: BTreeSet<String> = ["a", "b", "b::c", "d"].into_iter().map(String::from).collect();
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), uses("a", "use crate::b::c::Thing; fn f() {}", &modules));
    edges.insert("b".to_owned(), uses("b", "pub mod c; use c::Other;", &modules));
    edges.insert("b::c".to_owned(), uses("b::c", "use super::{Parent, x};", &modules));
    edges.insert("d".to_owned(), uses("d", "use crate::a::Y;", &modules));
    assert_eq!(edges["a"].keys().collect::<Vec<_>>(), ["b::c"]);
    assert_eq!(circles(&edges), vec![vec!["b".to_owned(), "b::c".to_owned()]]);
    edges.get_mut("b::c").unwrap().remove("b");
    assert!(circles(&edges).is_empty());
}
