//! Embeds the pretrained backbone's weights (model/pretrained/effnet-lite0.safetensors, written
//! by `./dev setup` through tools/convert_effnet.py) into the crate, so the training binary (and
//! so the training container) carries them. Without the file the crate still builds, with an
//! empty weights blob that `effnet::EffNet::embedded` reports as missing, with the fix.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let weights = dir.join("pretrained").join("effnet-lite0.safetensors");
    // The folder (kept in git) rather than the file: a missing file would make cargo rerun
    // this script, and rebuild the crate, on every build.
    println!("cargo:rerun-if-changed=pretrained");
    let path = if weights.is_file() {
        weights
    } else {
        println!(
            "cargo:warning=model/pretrained/effnet-lite0.safetensors is missing: model.arch fast/accurate will refuse to train; run ./dev setup"
        );
        let out =
            PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("none.safetensors");
        if let Err(e) = std::fs::write(&out, b"") {
            println!("cargo:warning=failed to write {}: {e}", out.display());
        }
        out
    };
    println!("cargo:rustc-env=WASTE_MODEL_PRETRAINED={}", path.display());
}
