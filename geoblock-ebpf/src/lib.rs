//! What every XDP object shares: geoblock's and the benchmark's (bench-ebpf).
#![no_std]

/// The licence section the kernel reads (GPL-compatible, so GPL-only
/// helpers may be called) and the panic handler `no_std` requires; it is
/// never reached: the verifier refuses programs that could panic.
#[macro_export]
macro_rules! object_boilerplate {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
