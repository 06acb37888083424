//! Classic pcap files (what `tcpdump -w` writes): a 24-byte file header,
//! then a 16-byte header before each frame. Every record goes out in one
//! write and is flushed, so the file is complete whenever the writer stops.

use std::io::{self, Write};

/// Microsecond timestamps, in the writer's (little-endian) byte order.
const MAGIC: u32 = 0xa1b2_c3d4;
const VERSION: (u16, u16) = (2, 4);
/// LINKTYPE_ETHERNET: the frames start with their Ethernet header.
pub const LINKTYPE_ETHERNET: u32 = 1;

pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header: Ethernet frames of at most `snaplen` bytes.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC.to_le_bytes());
        header.extend_from_slice(&VERSION.0.to_le_bytes());
        header.extend_from_slice(&VERSION.1.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes()); // thiszone: timestamps are UTC
        header.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        header.extend_from_slice(&snaplen.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        out.flush()?;
        Ok(PcapWriter { out })
    }

    /// Appends a frame captured at `unix_ns` (nanoseconds since the epoch):
    /// `data` is what was captured, `orig_len` the frame's real length.
    pub fn write(&mut self, unix_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let mut record = Vec::with_capacity(16 + data.len());
        record.extend_from_slice(&((unix_ns / 1_000_000_000) as u32).to_le_bytes());
        record.extend_from_slice(&((unix_ns % 1_000_000_000 / 1000) as u32).to_le_bytes());
        record.extend_from_slice(&(data.len() as u32).to_le_bytes());
        record.extend_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        record.extend_from_slice(data);
        self.out.write_all(&record)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn header_and_records_are_laid_out_as_libpcap_reads_them() {
        let mut w = PcapWriter::new(Vec::new(), 128).unwrap();
        w.write(1_700_000_000_123_456_789, &[0xaa; 60], 60).unwrap();
        w.write(1_700_000_001_000_000_000, &[0xbb; 128], 1514).unwrap();
        let file = w.out;
        assert_eq!(file.len(), 24 + 16 + 60 + 16 + 128);
        assert_eq!(u32_at(&file, 0), MAGIC);
        assert_eq!(&file[4..8], &[2, 0, 4, 0]);
        assert_eq!(u32_at(&file, 16), 128, "snaplen");
        assert_eq!(u32_at(&file, 20), LINKTYPE_ETHERNET);
        let first = 24;
        assert_eq!(u32_at(&file, first), 1_700_000_000);
        assert_eq!(u32_at(&file, first + 4), 123_456, "microseconds");
        assert_eq!((u32_at(&file, first + 8), u32_at(&file, first + 12)), (60, 60));
        let second = first + 16 + 60;
        assert_eq!((u32_at(&file, second), u32_at(&file, second + 4)), (1_700_000_001, 0));
        assert_eq!((u32_at(&file, second + 8), u32_at(&file, second + 12)), (128, 1514), "truncated frame");
        assert_eq!(file[second + 16], 0xbb);
    }
}
