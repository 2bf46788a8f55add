//! tt-metal's own per-chip memory counters: the shared-memory regions
//! `/dev/shm/tt_device_<asic id>_memory` that `SharedMemoryStatsProvider`
//! (tt_metal/impl/memory_tracking/memory_stats_shm.cpp) updates on every buffer allocation and
//! free, unless `TT_METAL_SHM_TRACKING_DISABLED` is set. An oracle independent of tt-tracer:
//! tt-metal writes it from inside the process (tests/ttnn/README.md).
//!
//! Layout version 3 (tt-metal 0.81.1), all little-endian, `#[repr(C)]` of
//! `DeviceMemoryRegion` (aligned to 64: 8576 bytes):
//!
//! | offset | field |
//! |---|---|
//! | 0 | u32 version, u32 num_active_processes, u64 last_update_timestamp |
//! | 16 | u32 reference_count, (pad), u64 board_serial, u64 asic_id, u32 device_id, (pad) |
//! | 48 | u64 total_{dram, l1, l1_small, trace, cb}_allocated |
//! | 88 | 16 × ChipStats (48 B): u32 chip_id (u32::MAX = unused), u32 is_remote, u64 {dram, l1, l1_small, trace, cb}_allocated |
//! | 856 | 64 × ProcessStats (120 B): i32 pid (0 = unused), (pad), u64 {dram, l1, l1_small, trace, cb}_allocated, u64 last_update_timestamp, char process_name[64] |

use std::{collections::BTreeMap, fs, path::Path};

/// The layout this reader knows.
pub const VERSION: u32 = 3;
const REGION_SIZE: usize = 8576;
const CHIPS_AT: usize = 88;
const CHIP_SIZE: usize = 48;
const MAX_CHIPS: usize = 16;
const PROCESSES_AT: usize = CHIPS_AT + CHIP_SIZE * MAX_CHIPS;
const PROCESS_SIZE: usize = 120;
const MAX_PROCESSES: usize = 64;
const UNUSED_CHIP: u32 = u32::MAX;

/// Bytes allocated now, by tt-metal's own count, per buffer type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocated {
    pub dram: u64,
    pub l1: u64,
    pub l1_small: u64,
    pub trace: u64,
    pub cb: u64,
}

/// One region (one per device tt-metal opened).
#[derive(Clone, Debug)]
pub struct Region {
    pub version: u32,
    pub asic_id: u64,
    pub device_id: u32,
    pub total: Allocated,
    /// By chip id.
    pub chips: BTreeMap<u32, Allocated>,
    /// By pid: what each attached process allocated, and its name.
    pub processes: BTreeMap<i32, (Allocated, String)>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn allocated_at(b: &[u8], at: usize) -> Allocated {
    Allocated {
        dram: u64_at(b, at),
        l1: u64_at(b, at + 8),
        l1_small: u64_at(b, at + 16),
        trace: u64_at(b, at + 24),
        cb: u64_at(b, at + 32),
    }
}

/// Parses one region; refuses a size or version this reader does not know.
pub fn parse(b: &[u8]) -> Result<Region, String> {
    if b.len() != REGION_SIZE {
        return Err(format!(
            "{} bytes, not the {REGION_SIZE} of layout version {VERSION}",
            b.len()
        ));
    }
    let version = u32_at(b, 0);
    if version != VERSION {
        return Err(format!(
            "layout version {version}, this reader knows {VERSION}"
        ));
    }
    let chips = (0..MAX_CHIPS)
        .map(|i| CHIPS_AT + i * CHIP_SIZE)
        .filter(|&at| u32_at(b, at) != UNUSED_CHIP)
        .map(|at| (u32_at(b, at), allocated_at(b, at + 8)))
        .collect();
    let processes = (0..MAX_PROCESSES)
        .map(|i| PROCESSES_AT + i * PROCESS_SIZE)
        .filter(|&at| u32_at(b, at) != 0)
        .map(|at| {
            let name = &b[at + 56..at + 120];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            (
                u32_at(b, at) as i32,
                (
                    allocated_at(b, at + 8),
                    String::from_utf8_lossy(name).into_owned(),
                ),
            )
        })
        .collect();
    Ok(Region {
        version,
        asic_id: u64_at(b, 32),
        device_id: u32_at(b, 40),
        total: allocated_at(b, 48),
        chips,
        processes,
    })
}

/// Every `/dev/shm/tt_device_*_memory`, by path.
pub fn regions() -> Result<BTreeMap<String, Region>, String> {
    let mut out = BTreeMap::new();
    let dir = fs::read_dir("/dev/shm").map_err(|e| format!("/dev/shm: {e}"))?;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("tt_device_") && name.ends_with("_memory") {
            let path = entry.path();
            let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let region = parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            out.insert(path.display().to_string(), region);
        }
    }
    Ok(out)
}

/// Per chip, summed over every region (a chip's counters live in the region of the device
/// that recorded them).
pub fn per_chip(regions: &BTreeMap<String, Region>) -> BTreeMap<u32, Allocated> {
    let mut out: BTreeMap<u32, Allocated> = BTreeMap::new();
    for r in regions.values() {
        for (chip, a) in &r.chips {
            let t = out.entry(*chip).or_default();
            t.dram += a.dram;
            t.l1 += a.l1;
            t.l1_small += a.l1_small;
            t.trace += a.trace;
            t.cb += a.cb;
        }
    }
    out
}

/// Removes regions no live process is attached to (tt-metal leaves them behind on purpose,
/// "like UMD locks"); returns the paths of those it kept.
pub fn remove_unused_regions() -> Result<Vec<String>, String> {
    let mut kept = Vec::new();
    for (path, region) in regions()? {
        let attached = region
            .processes
            .keys()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if attached {
            kept.push(path);
        } else {
            fs::remove_file(&path).map_err(|e| format!("{path}: {e}"))?;
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_of_layout_3_parses() {
        let mut b = vec![0u8; REGION_SIZE];
        b[0..4].copy_from_slice(&3u32.to_le_bytes());
        b[32..40].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        b[40..44].copy_from_slice(&1u32.to_le_bytes());
        for i in 0..MAX_CHIPS {
            let at = CHIPS_AT + i * CHIP_SIZE;
            b[at..at + 4].copy_from_slice(&UNUSED_CHIP.to_le_bytes());
        }
        // chip 1: DRAM 2048, L1 8192
        b[CHIPS_AT..CHIPS_AT + 4].copy_from_slice(&1u32.to_le_bytes());
        b[CHIPS_AT + 8..CHIPS_AT + 16].copy_from_slice(&2048u64.to_le_bytes());
        b[CHIPS_AT + 16..CHIPS_AT + 24].copy_from_slice(&8192u64.to_le_bytes());
        let p = PROCESSES_AT;
        b[p..p + 4].copy_from_slice(&4242i32.to_le_bytes());
        b[p + 8..p + 16].copy_from_slice(&2048u64.to_le_bytes());
        b[p + 56..p + 62].copy_from_slice(b"python");
        let r = parse(&b).unwrap();
        assert_eq!((r.asic_id, r.device_id), (0x1_0000_0000, 1));
        assert_eq!(r.chips.len(), 1);
        assert_eq!(
            r.chips[&1],
            Allocated {
                dram: 2048,
                l1: 8192,
                ..Allocated::default()
            }
        );
        assert_eq!(r.processes[&4242].0.dram, 2048);
        assert_eq!(r.processes[&4242].1, "python");
        b[0] = 4;
        assert!(parse(&b).unwrap_err().contains("version 4"));
        assert!(parse(&b[..100]).is_err());
    }
}
