//! Project tasks: `cargo xtask demo|test|lint|fuzz|bench`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut c: Command) -> Result<()> {
    eprintln!("+ {c:?}");
    let st = c.status().with_context(|| format!("running {c:?}"))?;
    if !st.success() {
        bail!("{c:?} failed: {st}");
    }
    Ok(())
}

fn have_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The whole test suite, as on a fresh machine: first the checks that keep it hermetic
/// ([`hermetic`]), then crs's state under /tmp is wiped (so no test can lean on what an
/// earlier run left there), the crs binary the end-to-end tests drive is built, and every
/// test of every crate runs under nextest (each test in its own process, which the
/// ptrace-heavy tests and the process-wide subreaper need).
fn test(extra: &[String]) -> Result<()> {
    hermetic()?;
    if !have_nextest() {
        bail!("cargo-nextest is needed: cargo install --locked cargo-nextest (.ci/run does)");
    }
    crs_testkit::wipe_tmp_state().with_context(|| format!("removing {}", crs_testkit::REF_WORK))?;
    let mut b = cargo();
    b.args(["build", "--workspace", "--bins"]);
    run(b)?;
    let mut t = cargo();
    t.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    t.args(extra);
    run(t)
}

/// Fails when a tracked file names this checkout's path or the shared data's (`../shared`
/// beside it, or `$CRS_SHARED`: a test must find shared data through
/// `crs_testkit::shared_dir`, so the suite passes from a clone at any path), or when a test
/// prints its own `SKIP:` line instead of calling `crs_testkit::skip` (which fails under
/// CI). The paths themselves, not the directory the checkout sits in: a clone in `/tmp`
/// would make every `/tmp/...` of a test look like one.
fn hermetic() -> Result<()> {
    let root = root();
    let parent = root.parent().context("the workspace has a parent")?;
    let mut machine = vec![root.clone(), parent.join("shared")];
    if let Some(shared) = std::env::var_os("CRS_SHARED") {
        machine.push(std::path::PathBuf::from(shared));
    }
    let pathspec = ["*.rs", "*.c", "*.h", "*.py", "*.sh", "*.toml", ".ci/*"];
    let grep = |pattern: &str, extra: &[&str]| -> Result<String> {
        let out = Command::new("git")
            .current_dir(&root)
            .args(["grep", "-n", "-F", pattern, "--"])
            .args(pathspec)
            .args(extra)
            .output()
            .context("running git grep")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut abs = String::new();
    for p in &machine {
        abs += &grep(&p.display().to_string(), &[])?;
    }
    if !abs.is_empty() {
        bail!("absolute paths of this machine in the tree (use crs_testkit::shared_dir):\n{abs}");
    }
    let own_skips = grep(
        "\"SKIP: ",
        &[":!crates/crs-testkit", ":!benches", ":!xtask"],
    )?;
    if !own_skips.is_empty() {
        bail!("tests that print their own SKIP line (call crs_testkit::skip):\n{own_skips}");
    }
    Ok(())
}

fn lint() -> Result<()> {
    let mut f = cargo();
    f.args(["fmt", "--all", "--", "--check"]);
    run(f)?;
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(c)
}

/// Runs each fuzz target for `secs` seconds (needs cargo-fuzz and nightly).
fn fuzz(secs: u64) -> Result<()> {
    let out = Command::new("cargo")
        .args(["fuzz", "list"])
        .current_dir(root().join("fuzz"))
        .output();
    let targets = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => bail!("cargo-fuzz is needed: cargo install cargo-fuzz (and a nightly toolchain)"),
    };
    for t in targets.lines().map(str::trim).filter(|t| !t.is_empty()) {
        let mut c = Command::new("cargo");
        c.current_dir(root().join("fuzz")).args([
            "+nightly",
            "fuzz",
            "run",
            t,
            "--",
            &format!("-max_total_time={secs}"),
            "-rss_limit_mb=512",
        ]);
        run(c)?;
    }
    Ok(())
}

/// The criterion benches and the end-to-end dump/restore benchmark (the matrix of issue #6),
/// which drives the release `crs` binary (built first), compares it with `$CRIU` (or `criu`
/// on PATH) when that passes `criu check`, and writes `target/bench/results.{json,svg}`.
/// Extra arguments go to `cargo bench` (`--bench dumprestore -- 1GiB/tmpfs`); the bench reads
/// `CRS_BENCH_ITERS` and `CRS_BENCH_BIG=0` from the environment.
fn bench(extra: &[String]) -> Result<()> {
    let mut b = cargo();
    b.args(["build", "--release", "-p", "crs"]);
    run(b)?;
    let mut c = cargo();
    c.args(["bench", "-p", "crs-benches"]).args(extra);
    run(c)
}

fn demo() -> Result<()> {
    let mut b = cargo();
    b.args([
        "build",
        "--release",
        "-p",
        "crs",
        "-p",
        "crs-tests",
        "--bins",
    ]);
    run(b)?;
    let mut d = Command::new(root().join("target/release/crs-demo"));
    d.arg(root().join("target/release/crs"));
    run(d)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let r = match args.first().map(String::as_str) {
        Some("test") => test(rest),
        Some("lint") => lint(),
        Some("fuzz") => fuzz(rest.first().and_then(|s| s.parse().ok()).unwrap_or(60)),
        Some("bench") => bench(rest),
        Some("demo") => demo(),
        _ => {
            eprintln!("usage: cargo xtask demo|test|lint|fuzz [SECS]|bench");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(1)
        }
    }
}
