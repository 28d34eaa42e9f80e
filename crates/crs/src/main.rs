//! crs: checkpoint/restore of Linux process trees in CRIU's image format.
//!
//! Two command lines live here: criu's (`crs dump -t PID -D DIR`, `crs restore
//! -D DIR`, `crs check`, ...; see [`criu_cli`]) and crit's (`crs decode`,
//! `encode`, `show`, `info`, `x`; see [`crit`]).
#![forbid(unsafe_code)]

mod crit;
mod criu_cli;
mod logging;
mod pyjson;
mod rpc;
mod rpc_opts;
mod run;

use std::os::fd::AsFd;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// crit's commands, as `crs <command>`.
#[derive(Parser, Debug)]
#[command(name = "crs", about = "crs: the crit commands")]
struct CritCli {
    #[command(subcommand)]
    command: CritCommand,
}

#[derive(Subcommand, Debug)]
enum CritCommand {
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

const CRIT_COMMANDS: &[&str] = &["decode", "encode", "show", "info", "x"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(crs_compel::guard::COMMAND) {
        return guardian(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("__lazy-server") {
        // Fills a lazily restored tree's memory (see crs_restore::lazy).
        return ExitCode::from(crs_restore::lazy::server_main() as u8);
    }
    if args.first().map(String::as_str) == Some("__track-keeper") {
        // The holder of the userfaultfds that track a tree's writes between dumps.
        let Some(name) = args.get(1) else {
            return ExitCode::from(2);
        };
        return ExitCode::from(crs_dump::track::keeper_main(name) as u8);
    }
    if args
        .first()
        .is_some_and(|a| CRIT_COMMANDS.contains(&a.as_str()))
    {
        let cli = CritCli::parse();
        let result = match cli.command {
            CritCommand::Decode(a) => crit::decode(&a),
            CritCommand::Encode(a) => crit::encode(&a),
            CritCommand::Show(a) => crit::show(&a),
            CritCommand::Info(a) => crit::info(&a),
            CritCommand::X(a) => crit::explore(&a),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crs: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    match criu_cli::parse(&args) {
        Ok(parsed) => run::run(&parsed),
        Err(e) => {
            eprintln!("crs: {e}");
            eprintln!("Try 'crs --help' for more information.");
            ExitCode::from(1)
        }
    }
}

/// `crs __guardian <crs pid>`: the guardian crs starts for each dump and restore (see
/// `crs_compel::guard`), reading crs's journal on stdin.
fn guardian(args: &[String]) -> ExitCode {
    let Some(crs) = args.first().and_then(|a| a.parse().ok()) else {
        eprintln!("crs: {} needs the pid of crs", crs_compel::guard::COMMAND);
        return ExitCode::from(2);
    };
    let _ = logging::init(3, None);
    let stdin = std::io::stdin().as_fd().try_clone_to_owned();
    let result = stdin
        .map_err(|e| crs_compel::Error::Guardian {
            what: "taking its socket".into(),
            source: e,
        })
        .and_then(|sock| crs_compel::guard::serve(sock, crs));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crs guardian: {e}");
            ExitCode::from(1)
        }
    }
}
