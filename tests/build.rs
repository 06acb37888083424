//! Builds the benchmark's XDP programs (bench-ebpf) into OUT_DIR, where
//! `src/programs.rs` embeds them. How, and with which toolchain: ebpf-build.
fn main() -> ebpf_build::Result<()> {
    ebpf_build::build("bench-ebpf")
}
