//! crit's job: images to JSON and back, and quick views of an image directory.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use crs_images::codec::{decode_image, encode_image, DecodeOptions};
use crs_images::{explore, frame, ImageError};

use crate::pyjson;

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Image to decode (stdin by default).
    #[arg(short = 'i', long = "in")]
    input: Option<PathBuf>,
    /// Where to write the JSON (stdout by default).
    #[arg(short = 'o', long = "out")]
    output: Option<PathBuf>,
    /// Indented, with some numbers in field-specific form (hex, flags, devices).
    #[arg(long)]
    pretty: bool,
    /// Do not show entry payloads, only their sizes.
    #[arg(long)]
    nopl: bool,
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// JSON to encode (stdin by default).
    #[arg(short = 'i', long = "in")]
    input: Option<PathBuf>,
    /// Where to write the image (stdout by default).
    #[arg(short = 'o', long = "out")]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Image to show.
    input: PathBuf,
    /// Do not show entry payloads, only their sizes.
    #[arg(long)]
    nopl: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Image to describe.
    input: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum What {
    /// The process tree.
    Ps,
    /// Open files of each task.
    Fds,
    /// Memory mappings of each task.
    Mems,
    /// Dumped pages and the mappings they belong to.
    Rss,
}

#[derive(Args, Debug)]
pub struct ExploreArgs {
    /// Image directory.
    dir: PathBuf,
    /// What to show.
    what: What,
}

fn read_input(path: Option<&PathBuf>) -> Result<(String, Vec<u8>)> {
    match path {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Ok((p.display().to_string(), bytes))
        }
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
            Ok(("<stdin>".to_string(), bytes))
        }
    }
}

fn write_output(path: Option<&PathBuf>, bytes: &[u8]) -> Result<()> {
    match path {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .context("writing stdout")
        }
    }
}

fn decode_to(input: Option<&PathBuf>, output: Option<&PathBuf>, opts: DecodeOptions) -> Result<()> {
    let (name, bytes) = read_input(input)?;
    let value = match decode_image(&name, &bytes, opts) {
        Ok(v) => v,
        Err(ImageError::RawImage { image, kind, .. }) => {
            bail!("{image} holds raw data ({kind}), not entries; nothing to decode")
        }
        Err(e @ ImageError::BadMagic { .. }) => {
            return Err(anyhow::Error::new(e)
                .context("maybe this is an image with raw data (e.g. pages-*.img)?"))
        }
        Err(e) => return Err(e.into()),
    };
    let mut text = pyjson::to_string(&value, opts.pretty);
    if output.is_none() {
        text.push('\n');
    }
    write_output(output, text.as_bytes())
}

pub fn decode(a: &DecodeArgs) -> Result<()> {
    decode_to(
        a.input.as_ref(),
        a.output.as_ref(),
        DecodeOptions {
            pretty: a.pretty,
            no_payload: a.nopl,
        },
    )
}

pub fn show(a: &ShowArgs) -> Result<()> {
    decode_to(
        Some(&a.input),
        None,
        DecodeOptions {
            pretty: true,
            no_payload: a.nopl,
        },
    )
}

pub fn encode(a: &EncodeArgs) -> Result<()> {
    let (name, bytes) = read_input(a.input.as_ref())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| {
        format!("{name}: not JSON (encode expects crit's JSON form of an image)")
    })?;
    let image = encode_image(&name, &value)?;
    write_output(a.output.as_ref(), &image)
}

pub fn info(a: &InfoArgs) -> Result<()> {
    let name = a.input.display().to_string();
    let bytes = std::fs::read(&a.input).with_context(|| format!("reading {name}"))?;
    let (magic, start) = frame::parse_header(&name, &bytes)?;
    let value = decode_image(
        &name,
        &bytes,
        DecodeOptions {
            pretty: false,
            no_payload: true,
        },
    )?;
    let mut count = value["entries"].as_array().map_or(0, Vec::len);
    if magic.name == "PAGEMAP" {
        count = count.saturating_sub(1);
    }
    let _ = start;
    let out = serde_json::json!({ "magic": magic.name, "count": count });
    println!("{}", pyjson::to_string(&out, true));
    Ok(())
}

pub fn explore(a: &ExploreArgs) -> Result<()> {
    let text = match a.what {
        What::Ps => explore::ps(&a.dir)?,
        What::Fds => explore::fds(&a.dir)?,
        What::Mems => explore::mems(&a.dir)?,
        What::Rss => explore::rss(&a.dir)?,
    };
    print!("{text}");
    Ok(())
}
