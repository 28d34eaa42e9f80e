//! crs: checkpoint/restore of Linux process trees in CRIU's image format.
#![forbid(unsafe_code)]

mod crit;
mod pyjson;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Checkpoint/restore in userspace, CRIU-compatible.
#[derive(Parser, Debug)]
#[command(name = "crs", version, about, disable_version_flag = true)]
struct Cli {
    /// Print the version in criu's format and exit.
    #[arg(short = 'V', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Convert an image from binary to JSON (crit decode).
    Decode(crit::DecodeArgs),
    /// Convert an image from JSON to binary (crit encode).
    Encode(crit::EncodeArgs),
    /// Show an image as readable JSON (crit show).
    Show(crit::ShowArgs),
    /// Show the magic and entry count of an image (crit info).
    Info(crit::InfoArgs),
    /// Explore an image directory: ps, fds, mems, rss (crit x).
    X(crit::ExploreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("Version: {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let result = match cli.command {
        Some(Command::Decode(a)) => crit::decode(&a),
        Some(Command::Encode(a)) => crit::encode(&a),
        Some(Command::Show(a)) => crit::show(&a),
        Some(Command::Info(a)) => crit::info(&a),
        Some(Command::X(a)) => crit::explore(&a),
        None => {
            eprintln!("crs: a command is needed; see crs --help");
            return ExitCode::from(1);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crs: {e:#}");
            ExitCode::from(1)
        }
    }
}
