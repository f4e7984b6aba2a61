//! `psd-gen`: writes a deterministic, realistic PSD bulk zip (or CSV) for tests and the demo.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// Generate a realistic USDA PSD bulk file (zip with one CSV entry, or the bare CSV)
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Data rows to write (the real file has about 2.1 million)
    #[arg(long, default_value_t = psd_gen::FULL_ROWS)]
    rows: u64,
    /// Seed for the values; the structure never changes
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Monthly release: 0 is January 2026; later ones revise recent market years
    #[arg(long, default_value_t = 0)]
    snapshot: u32,
    /// Write the bare CSV instead of a zip
    #[arg(long)]
    csv: bool,
    /// Deflate level of the zip entry (0-9)
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i64).range(0..=9))]
    level: i64,
    /// Output file; `-` for stdout (CSV only)
    #[arg(long, short)]
    out: PathBuf,
}

fn run(args: &Args) -> anyhow::Result<u64> {
    let spec = psd_gen::Spec {
        rows: args.rows,
        seed: args.seed,
        snapshot: args.snapshot,
    };
    if args.csv && args.out.as_os_str() == "-" {
        return Ok(psd_gen::write_csv(&spec, io::stdout().lock())?);
    }
    let tmp = args.out.with_extension("partial");
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let rows = if args.csv {
        psd_gen::write_csv(&spec, file)?
    } else {
        psd_gen::write_zip(&spec, BufWriter::new(file), args.level)?
    };
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot rename to {}", args.out.display()))?;
    Ok(rows)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(rows) => {
            eprintln!("psd-gen: wrote {rows} rows to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("psd-gen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
