//! criu's logging options: `-o FILE` (relative to the work dir, which defaults
//! to the images dir) and `-v N` (0 nothing, 1 errors, 2 warnings, 3 info,
//! 4 debug, 5+ trace). Without `-o`, messages go to stderr.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use tracing::level_filters::LevelFilter;

/// Where the log goes, resolved as criu does.
pub fn log_path(log_file: Option<&str>, work_dir: Option<&Path>) -> Option<PathBuf> {
    let f = log_file?;
    if f == "-" {
        return None;
    }
    let p = Path::new(f);
    Some(match work_dir {
        Some(w) if p.is_relative() => w.join(p),
        _ => p.to_path_buf(),
    })
}

fn level(verbosity: u32) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Installs the global subscriber. Returns the log path, if any.
pub fn init(verbosity: u32, path: Option<&Path>) -> Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level(verbosity))
        .with_target(false)
        .with_thread_ids(false);
    match path {
        Some(p) => {
            let file =
                File::create(p).with_context(|| format!("creating log file {}", p.display()))?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}
