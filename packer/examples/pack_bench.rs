//! Times `pack` on a module: `cargo run --release -p wasmbuild-packer --example pack_bench -- app.wasm`.
//! Compare with `time (tar c app.wasm | gzip -6 | sha256sum)`.

use std::time::Instant;

use wasmbuild_packer::{ImageInput, pack};
use wasmbuild_spec::ImageConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: pack_bench MODULE.wasm")?;
    let module = std::fs::read(&path)?;
    let config = ImageConfig::default();
    let input = ImageInput {
        module_name: "app",
        module: &module,
        config: &config,
        copies: &[],
        source_date_epoch: None,
    };
    for _ in 0..3 {
        let start = Instant::now();
        let image = pack(&input)?;
        let elapsed = start.elapsed();
        eprintln!(
            "{} bytes -> layer {} bytes in {:.3}s ({})",
            module.len(),
            image.layers[0].bytes.len(),
            elapsed.as_secs_f64(),
            image.digest()
        );
    }
    Ok(())
}
