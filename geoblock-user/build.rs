//! Builds the XDP program (geoblock-ebpf) into OUT_DIR, where
//! `src/programs.rs` embeds it. How, and with which toolchain: ebpf-build.
fn main() -> ebpf_build::Result<()> {
    ebpf_build::build("geoblock-ebpf")
}
