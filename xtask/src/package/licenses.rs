//! third-party-licenses.gz: the licence texts of the crates compiled into
//! /usr/bin/geoblock. Their licences (MIT, BSD, ISC, Apache-2.0...) ask
//! that binary copies carry their notices; Cargo.lock alone does not.
//!
//! The crates are the normal dependencies, transitively, of geoblock-user
//! (the binary) and geoblock-ebpf (the XDP program it embeds), for the
//! host's platform, as `cargo metadata` resolves them: no dev or build
//! dependency, no workspace member (dist/debian/copyright covers those).
//! Proc-macro crates stay in: listing one too many is harmless. Each crate
//! gives the LICENSE*, LICENCE*, COPYING* and NOTICE* files of its source
//! directory, and its `license-file`. A few publish none (aya-ebpf's crates
//! keep theirs at the repository's root): those whose licence expression
//! names only licences of [`KNOWN`] are listed with "Licence text: see" the
//! expression, their authors and repository; any other fails the build.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

use crate::{cmd, install::copy, toolchain::Toolchain};

/// The packages whose code is in the binary.
const ROOTS: [&str; 2] = ["geoblock-user", "geoblock-ebpf"];
/// File name prefixes (upper case) of licence texts and notices.
const TEXTS: [&str; 4] = ["LICENSE", "LICENCE", "COPYING", "NOTICE"];
pub const FILE: &str = "third-party-licenses";
/// SPDX identifiers whose text is standard (one text for every crate
/// naming it), so that the identifier stands for it.
const KNOWN: [&str; 12] = [
    "0BSD",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "CC0-1.0",
    "ISC",
    "MIT",
    "MIT-0",
    "Unicode-3.0",
    "Unlicense",
    "Zlib",
    "CDLA-Permissive-2.0",
];

/// A crate compiled into the binary, with its licence texts (file name, text).
struct Crate {
    name: String,
    version: String,
    license: String,
    authors: String,
    repository: String,
    texts: Vec<(String, String)>,
}

/// Writes `doc`/third-party-licenses.gz.
pub fn write(toolchain: Toolchain, doc: &Path) -> Result<()> {
    let meta = metadata(toolchain)?;
    let crates = linked(&meta)?.into_iter().map(read).collect::<Result<Vec<_>>>()?;
    let path = doc.join(FILE);
    copy(render(&crates).as_bytes(), &path, 0o644)?;
    cmd::run(Command::new("gzip").arg("-9n").arg(&path))
}

/// `cargo metadata` for the host's platform (the binary's).
fn metadata(toolchain: Toolchain) -> Result<Value> {
    let version = cmd::capture(toolchain.cargo().arg("-vV"))?;
    let host = version.lines().find_map(|line| line.strip_prefix("host: ")).context("cargo -vV names no host")?;
    let mut cargo = toolchain.cargo();
    cargo.args(["metadata", "--format-version", "1", "--filter-platform", host.trim()]);
    serde_json::from_str(&cmd::capture(&mut cargo)?).context("reading cargo metadata's JSON")
}

/// The packages (sorted by name and version) reached from [`ROOTS`] through
/// normal dependencies, workspace members left out.
fn linked(meta: &Value) -> Result<Vec<&Value>> {
    let packages: BTreeMap<&str, &Value> =
        meta["packages"].as_array().context("no packages")?.iter().map(|p| (id(p), p)).collect();
    let members: BTreeSet<&str> =
        meta["workspace_members"].as_array().context("no members")?.iter().filter_map(Value::as_str).collect();
    let is_root = |m: &&str| packages.get(m).is_some_and(|p| ROOTS.iter().any(|root| p["name"] == *root));
    let roots: Vec<&str> = members.iter().copied().filter(is_root).collect();
    ensure!(roots.len() == ROOTS.len(), "cargo metadata lacks one of {ROOTS:?}");
    let mut crates: Vec<&Value> = reachable(meta, roots)?.difference(&members).map(|dep| packages[dep]).collect();
    crates.sort_by_key(|p| (p["name"].as_str(), p["version"].as_str()));
    Ok(crates)
}

/// The ids of `roots` and of what they depend on at run time, transitively,
/// in cargo's resolve graph.
fn reachable<'a>(meta: &'a Value, mut pending: Vec<&'a str>) -> Result<BTreeSet<&'a str>> {
    let nodes: BTreeMap<&str, &Value> =
        meta["resolve"]["nodes"].as_array().context("no resolve")?.iter().map(|n| (id(n), n)).collect();
    let mut seen = BTreeSet::new();
    while let Some(node) = pending.pop() {
        if seen.insert(node) {
            pending.extend(normal_deps(nodes.get(node).with_context(|| format!("{node} is not resolved"))?));
        }
    }
    Ok(seen)
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap_or_default()
}

/// The ids a resolve node depends on at run time (a `kind` of null).
fn normal_deps(node: &Value) -> impl Iterator<Item = &str> {
    let deps = node["deps"].as_array().map(Vec::as_slice).unwrap_or_default();
    let normal =
        |dep: &&Value| dep["dep_kinds"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()));
    deps.iter().filter(normal).filter_map(|dep| dep["pkg"].as_str())
}

/// A package's name, version, licence, authors, repository and licence texts.
fn read(package: &Value) -> Result<Crate> {
    let field = |name: &str| package[name].as_str().unwrap_or_default().to_owned();
    let (name, version, license) = (field("name"), field("version"), field("license"));
    let manifest = PathBuf::from(field("manifest_path"));
    let dir = manifest.parent().context("manifest_path has no directory")?;
    let texts = texts(dir, package["license_file"].as_str())?;
    if texts.is_empty() && !known(&license) {
        bail!(
            "{name} {version}: no licence text in {} (LICENSE*, COPYING*, NOTICE*), and its licence `{license}` \
             is not only SPDX identifiers of {KNOWN:?}",
            dir.display()
        );
    }
    let authors = package["authors"].as_array().map(Vec::as_slice).unwrap_or_default();
    let authors = authors.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ");
    Ok(Crate { name, version, license, authors, repository: field("repository"), texts })
}

/// Whether an SPDX expression (`MIT OR Apache-2.0`, also the old
/// `MIT/Apache-2.0`) names licences of [`KNOWN`] only.
fn known(expression: &str) -> bool {
    let words = expression.split(|c: char| c.is_whitespace() || "()/".contains(c)).filter(|w| !w.is_empty());
    let mut ids = words.filter(|word| !["OR", "AND", "WITH"].contains(word)).peekable();
    ids.peek().is_some() && ids.all(|id| KNOWN.contains(&id))
}

/// The licence files of a crate's source directory, by name, and its
/// `license-file` (relative to `dir`) if it is another.
fn texts(dir: &Path, license_file: Option<&str>) -> Result<Vec<(String, String)>> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && TEXTS.iter().any(|prefix| name.to_uppercase().starts_with(prefix)) {
            names.insert(name);
        }
    }
    names.extend(license_file.map(str::to_owned));
    let read = |name: String| {
        let bytes = fs::read(dir.join(&name)).with_context(|| format!("reading {}", dir.join(&name).display()))?;
        Ok((name, String::from_utf8_lossy(&bytes).into_owned()))
    };
    names.into_iter().map(read).collect()
}

fn render(crates: &[Crate]) -> String {
    let rule = "=".repeat(78);
    let mut out = format!(
        "Third-party licences of /usr/bin/geoblock\n\n\
         The binary (and the XDP program it embeds) is built from these {} Rust\n\
         crates, with geoblock's own code (see copyright). Each is listed with\n\
         its version, its licence as its Cargo.toml states it, and the licence\n\
         texts and notices its source carries. The standard texts of the\n\
         licences named are at https://spdx.org/licenses/ (Debian has\n\
         Apache-2.0 in /usr/share/common-licenses).\n",
        crates.len()
    );
    for krate in crates {
        out += &format!("\n{rule}\n{} {}\nLicense: {}\n", krate.name, krate.version, krate.license);
        for (label, value) in [("Authors", &krate.authors), ("Repository", &krate.repository)] {
            if !value.is_empty() {
                out += &format!("{label}: {value}\n");
            }
        }
        if krate.texts.is_empty() {
            out += &format!("Licence text: see {} (its source carries none)\n", krate.license);
        }
        for (file, text) in &krate.texts {
            out += &format!("\n--- {file} ---\n\n{}\n", text.trim_end());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_normal_dependencies_of_the_roots_only() {
        let node = |id: &str, deps: &[(&str, &str)]| {
            let deps: Vec<Value> = deps
                .iter()
                .map(|(pkg, kind)| {
                    let kind = if kind.is_empty() { Value::Null } else { Value::from(*kind) };
                    serde_json::json!({"pkg": pkg, "dep_kinds": [{"kind": kind}]})
                })
                .collect();
            serde_json::json!({"id": id, "deps": deps})
        };
        let package = |id: &str| serde_json::json!({"id": id, "name": id, "version": "1.0.0"});
        let ids = [
            "geoblock-user",
            "geoblock-ebpf",
            "geoblock-common",
            "tokio",
            "aya-ebpf",
            "bytes",
            "cc",
            "tempfile",
            "unused",
        ];
        let meta = serde_json::json!({
            "packages": ids.map(package),
            "workspace_members": ["geoblock-user", "geoblock-ebpf", "geoblock-common"],
            "resolve": {"nodes": [
                node("geoblock-user", &[("geoblock-common", ""), ("cc", "build"), ("tempfile", "dev")]),
                node("geoblock-ebpf", &[("geoblock-common", ""), ("aya-ebpf", "")]),
                node("geoblock-common", &[("tokio", "")]),
                node("tokio", &[("bytes", "")]),
                node("aya-ebpf", &[]), node("bytes", &[]), node("cc", &[]), node("tempfile", &[]), node("unused", &[]),
            ]},
        });
        let names: Vec<&str> = linked(&meta).unwrap().iter().map(|p| id(p)).collect();
        assert_eq!(names, ["aya-ebpf", "bytes", "tokio"]);
    }

    #[test]
    fn knows_expressions_of_standard_licences_only() {
        assert!(known("MIT OR Apache-2.0"));
        assert!(known("(MIT OR Apache-2.0) AND Unicode-3.0"));
        assert!(known("MIT/Apache-2.0"));
        assert!(!known(""));
        assert!(!known("MIT OR LicenseRef-ring"));
        assert!(!known("GPL-2.0-only"));
    }
}
