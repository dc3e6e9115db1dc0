//! Converts one Imp checkpoint and prints what was written and how long it took.
//!
//! `cargo run -p impchat-convert --example convert -- SRC_DIR OUT_DIR [LM_QUANT] [VISION_QUANT] [--overwrite]`
//! (LM_QUANT: Q4_0, Q4_K_M, Q5_K, Q6_K, Q8_0, F16; VISION_QUANT: F16, Q8_0; defaults Q4_K_M and F16.)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use impchat_convert::{convert, ConvertOptions, LmQuant, VisionQuant};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let overwrite = args.iter().any(|a| a == "--overwrite");
    args.retain(|a| a != "--overwrite");
    let [src, out, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: convert SRC_DIR OUT_DIR [LM_QUANT] [VISION_QUANT] [--overwrite]".into(),
        );
    };
    let lm: LmQuant = rest.first().map_or(Ok(LmQuant::Q4KM), |q| q.parse())?;
    let vision: VisionQuant = rest.get(1).map_or(Ok(VisionQuant::F16), |q| q.parse())?;
    let opts = ConvertOptions {
        lm,
        vision,
        name: None,
        overwrite,
    };
    let start = Instant::now();
    let written = convert(&PathBuf::from(src), &PathBuf::from(out), &opts, &mut |_| {})?;
    let seconds = start.elapsed().as_secs_f64();
    for file in [&written.language_model, &written.projector] {
        println!(
            "{}\t{} bytes\t{} tensors",
            file.path.display(),
            file.bytes,
            file.tensors
        );
    }
    println!(
        "converted {src} ({:?}, LM {lm}, vision {vision}) in {seconds:.2} s",
        written.family
    );
    Ok(())
}
