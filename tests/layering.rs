//! The layering stays true: every `crate::` path in `src/` is checked against the modules
//! its top-level module may use (docs/ARCHITECTURE.md): store < cache < fetch < fs and
//! download, with the commands' front ends above them all. A lower layer naming a higher
//! one fails here, as does a new top-level module nobody placed in the table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module of the library may name (besides itself).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    const LEAVES: &[&str] = &["crc64", "units", "logging", "metrics"];
    let with_leaves = |v: &'static [&'static str]| -> &'static [&'static str] {
        let mut all: Vec<&'static str> = v.to_vec();
        all.extend_from_slice(LEAVES);
        Box::leak(all.into_boxed_slice())
    };
    BTreeMap::from([
        ("crc64", &[][..]),
        ("units", &[][..]),
        ("logging", &[][..]),
        // Counters every layer increments; it names nobody.
        ("metrics", &[][..]),
        ("store", with_leaves(&[])),
        ("cache", with_leaves(&["store"])),
        ("fetch", with_leaves(&["store", "cache"])),
        ("fs", with_leaves(&["store", "cache", "fetch"])),
        ("download", with_leaves(&["store", "cache", "fetch"])),
        // The local server shares the store's signers and XML types, nothing else.
        ("serve", with_leaves(&["store"])),
        // Above the layers: the user's input to the layers' settings, and the front ends.
        ("config", with_leaves(&["store"])),
        (
            "cli",
            with_leaves(&["config", "store", "cache", "fs", "serve"]),
        ),
        (
            "cmd",
            with_leaves(&[
                "cli", "config", "store", "cache", "fetch", "fs", "download", "serve",
            ]),
        ),
    ])
}

/// The top-level module names a piece of Rust source uses through `crate::` paths,
/// including grouped imports (`use crate::{a::X, b}`). Line comments are skipped.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        // `crate::` preceded by an identifier character is some other path (`mycrate::`).
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if let Some(name) = first_segment(&item) {
                            found.insert(name);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else if let Some(name) = first_segment(rest) {
            found.insert(name);
        }
    }
    found
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_parser_finds_plain_grouped_and_inline_paths() {
    let src = "use crate::store::X;\n\
               use crate::{fetch::{A, B}, cache,\n    units::parse};\n\
               // use crate::fs::Commented;\n\
               fn f() { crate::crc64::checksum(b\"\"); mycrate::no(); }\n";
    let found: Vec<String> = crate_paths(src).into_iter().collect();
    assert_eq!(found, ["cache", "crc64", "fetch", "store", "units"]);
}

#[test]
fn no_layer_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = allowed();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" || top == "bin" {
            continue; // the binaries and the crate root may name everything
        }
        seen_modules.insert(top.clone());
        let Some(may) = allowed.get(top.as_str()) else {
            violations.push(format!(
                "src/{}: module `{top}` has no place in the layering table of \
                 tests/layering.rs",
                rel.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&source) {
            if used != top && !may.contains(&used.as_str()) {
                violations.push(format!(
                    "src/{}: `{top}` uses `crate::{used}`, which is not below it",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        files.len() > 40 && seen_modules.len() >= 10,
        "found only {} files in {} modules under {}",
        files.len(),
        seen_modules.len(),
        src.display()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
