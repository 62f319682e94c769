//! With the `bench` feature, embeds the lab's eBPF object (`fireplot-ebpf`'s
//! `fireplot-lab` bin, built by `cargo xtask build`) for `lab_ebpf`. Without
//! the feature, or without the object, an empty placeholder: the crate still
//! builds on stable (xtask builds it before any object exists), and loading
//! says how to build the object.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("fireplot-lab.bpf.o");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_BENCH").is_none() {
        fs::write(&out, []).expect("write empty eBPF placeholder");
        return;
    }
    let src = match env::var_os("FIREPLOT_EBPF_LAB_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
            manifest.join("../fireplot-ebpf/target/bpfel-unknown-none/release/fireplot-lab")
        }
    };
    println!("cargo:rerun-if-env-changed=FIREPLOT_EBPF_LAB_OBJECT");
    println!("cargo:rerun-if-changed={}", src.display());
    match fs::read(&src) {
        Ok(bytes) => fs::write(&out, bytes).expect("write embedded eBPF object"),
        Err(_) => fs::write(&out, []).expect("write empty eBPF placeholder"),
    }
}
