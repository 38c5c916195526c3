//! deploy/ and the Dockerfile: `deploy/check.sh` passes (it renders deploy/base and every
//! overlay with kubectl's kustomize, validates them strictly, runs `remarket check-config` on
//! each rendered config and lints deploy/; see deploy/README.md), and the Dockerfile's runtime
//! stage installs the Debian packages that provide every shared library the binary links.
//!
//! A missing tool (kubectl, kubernetes-validate, yamllint, promtool; ldd, dpkg) skips with a
//! note when `CI` is unset and fails when it is set, as a missing tansu does for the Kafka
//! tests (tests/common/kafka.rs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// deploy/check.sh's exit status when nothing failed but checks were skipped (a tool is
/// missing and `CI` is unset).
const SKIPPED: i32 = 77;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A tool the test needs is missing: a failure in CI, else a note.
fn tool_missing(what: &str) {
    assert!(!ci(), "{what}, but CI is set: CI must provide it (.ci/run)");
    eprintln!("skipping: {what}");
}

#[test]
fn deploy_check_script_passes() {
    let out = Command::new("bash")
        .arg(root().join("deploy/check.sh"))
        .current_dir(root())
        .env("REMARKET_BIN", env!("CARGO_BIN_EXE_remarket"))
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return tool_missing(&format!("bash cannot run deploy/check.sh: {e}")),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => {}
        Some(SKIPPED) if !ci() => eprintln!("deploy/check.sh skipped some checks:\n{text}"),
        _ => panic!("deploy/check.sh failed ({}):\n{text}", out.status),
    }
}

/// The Dockerfile's instructions (continuation lines joined, comments dropped) of its last
/// stage, the image that ships.
fn final_stage(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let mut stage = Vec::new();
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.to_ascii_uppercase().starts_with("FROM ") {
            stage.clear();
        }
        stage.push(line.to_owned());
    }
    stage
}

/// The packages `apt-get install` installs in these instructions.
fn apt_installed(stage: &[String]) -> BTreeSet<String> {
    let mut packages = BTreeSet::new();
    for line in stage.iter().filter(|l| l.starts_with("RUN ")) {
        for command in line.split("&&").flat_map(|c| c.split(';')) {
            let words: Vec<&str> = command.split_whitespace().collect();
            let Some(i) = words.windows(2).position(|w| w == ["apt-get", "install"]) else {
                continue;
            };
            packages.extend(
                words[i + 2..]
                    .iter()
                    .filter(|w| !w.starts_with('-'))
                    .map(|w| w.split('=').next().unwrap().to_owned()),
            );
        }
    }
    packages
}

/// The Debian package that owns `path` (`dpkg -S`), trying the other spelling of a merged-/usr
/// path and the resolved symlink too; `Err` when dpkg cannot run.
fn owner(path: &Path) -> Result<Option<String>, std::io::Error> {
    let mut candidates = vec![path.to_path_buf()];
    if let Ok(real) = path.canonicalize() {
        candidates.push(real);
    }
    for p in candidates.clone() {
        let s = p.to_string_lossy().into_owned();
        candidates.push(match s.strip_prefix("/usr") {
            Some(rest) => PathBuf::from(rest),
            None => PathBuf::from(format!("/usr{s}")),
        });
    }
    for p in candidates {
        let out = Command::new("dpkg").arg("-S").arg(&p).output()?;
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "libssl3:amd64: /usr/lib/x86_64-linux-gnu/libssl.so.3"
        let package = text
            .lines()
            .filter(|l| !l.starts_with("diversion"))
            .find_map(|l| l.split_once(": "))
            .map(|(pkgs, _)| pkgs.split([',', ':']).next().unwrap().trim().to_owned());
        if package.is_some() {
            return Ok(package);
        }
    }
    Ok(None)
}

/// The runtime stage's `apt-get install` covers the package of every library `ldd` reports
/// for the binary (the one this test suite built; a release build links the same system
/// libraries), except libc6 and its own dependencies, which every Debian image has. Mapping
/// files to packages uses this machine's dpkg database, so it is only meaningful when this
/// machine runs the same Debian release as the runtime image: otherwise the test says so and
/// passes.
#[test]
fn runtime_stage_installs_the_linked_libraries() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stage = final_stage(&dockerfile);
    let image = stage[0].split_whitespace().nth(1).unwrap().to_owned();
    let release = image
        .split_once(':')
        .map(|(_, tag)| tag.split('-').next().unwrap().to_owned());
    let host = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_owned));
    if release.is_none() || release != host {
        eprintln!(
            "skipping: the runtime image is {image}, this machine runs {host:?}: its dpkg \
             database says nothing about that image's packages"
        );
        return;
    }
    let installed = apt_installed(&stage);
    assert!(
        installed.contains("ca-certificates"),
        "the runtime stage must install ca-certificates (librdkafka's CA bundle for Kafka \
         over TLS): {installed:?}"
    );

    let ldd = match Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_remarket"))
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => panic!("ldd failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => return tool_missing(&format!("ldd cannot run: {e}")),
    };
    let libraries: Vec<PathBuf> = ldd
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            assert!(!l.contains("not found"), "ldd: {l}");
            let path = match l.split_once("=> ") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next().filter(|p| p.starts_with('/'))?,
            };
            Some(PathBuf::from(path))
        })
        .collect();
    assert!(libraries.len() >= 3, "unexpected ldd output:\n{ldd}");

    // libc6 is in every Debian image (every Essential package needs it), and so is what it
    // depends on (libgcc-s1 in bookworm): asked from dpkg, not assumed.
    let mut base = BTreeSet::from(["libc6".to_owned()]);
    match Command::new("dpkg-query")
        .args(["-W", "-f=${Depends}", "libc6"])
        .output()
    {
        Ok(out) if out.status.success() => base.extend(
            String::from_utf8_lossy(&out.stdout)
                .split(',')
                .filter_map(|d| d.split_whitespace().next())
                .map(|d| d.split(':').next().unwrap().to_owned()),
        ),
        Ok(out) => panic!("dpkg-query: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => return tool_missing(&format!("dpkg-query cannot run: {e}")),
    }

    let mut missing = Vec::new();
    for lib in &libraries {
        let package = match owner(lib) {
            Ok(Some(p)) => p,
            Ok(None) => panic!(
                "{} belongs to no Debian package: the runtime image would not have it",
                lib.display()
            ),
            Err(e) => return tool_missing(&format!("dpkg cannot run: {e}")),
        };
        if !installed.contains(&package) && !base.contains(&package) {
            missing.push(format!("{} ({package})", lib.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "the Dockerfile's runtime stage ({image}) does not install the packages of {missing:?}; \
         it installs {installed:?} (and the image has {base:?})"
    );
}
