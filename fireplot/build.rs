//! Embeds the eBPF object built by `cargo xtask build` (nightly,
//! bpfel-unknown-none). Without it the crate still builds on stable, and
//! `fireplot run` says how to build the object.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("fireplot.bpf.o");
    let src = match env::var_os("FIREPLOT_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
            manifest.join("../fireplot-ebpf/target/bpfel-unknown-none/release/fireplot")
        }
    };
    println!("cargo:rerun-if-env-changed=FIREPLOT_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", src.display());
    match fs::read(&src) {
        Ok(bytes) => fs::write(&out, bytes).expect("write embedded eBPF object"),
        Err(_) => fs::write(&out, []).expect("write empty eBPF placeholder"),
    }
}
