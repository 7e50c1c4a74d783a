//! Guest physical layout and the x86-64 long-mode state the host installs
//! directly (no guest boot code: real-mode and ring-0 code is emulated
//! instruction by instruction under kvm-pvm, so the workload starts in
//! 64-bit ring 3 at its first instruction).
//!
//! ```text
//! 0x1000  PML4
//! 0x2000  PDPT
//! 0x3000  4 PDs: 2 MiB pages identity-mapping the first 4 GiB, user-accessible
//! 0x7000  GDT             0x7800  TSS (zeroed; needed for a valid TR)
//! 0x8000  per-vCPU slots, 64 bytes each (64 vCPUs max -> 4 KiB)
//! 0x9000  payload code
//! 3 GiB .. 4 GiB: no RAM (like the PCI hole); the payload's report and
//!         done registers live here, so its stores to them are MMIO exits.
//! ```
//!
//! The payload reports through MMIO rather than port I/O because kvm-pvm
//! does not honour IOPL 3 for guest ring 3: an `out` there raises #GP.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

/// PML4 table.
pub const PML4: u64 = 0x1000;
/// Page-directory-pointer table.
pub const PDPT: u64 = 0x2000;
/// First of four page directories (2 MiB pages).
pub const PD: u64 = 0x3000;
/// Global descriptor table.
pub const GDT: u64 = 0x7000;
/// Task-state segment.
pub const TSS: u64 = 0x7800;
/// First vCPU slot.
pub const SLOTS: u64 = 0x8000;
/// Bytes per vCPU slot (one cache line, so vCPUs do not false-share).
pub const SLOT_SIZE: u64 = 64;
/// Payload entry point.
pub const CODE: u64 = 0x9000;
/// Start of the RAM gap below 4 GiB.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the RAM gap.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The payload stores its counter here every few blocks (an MMIO exit).
pub const MMIO_REPORT: u64 = 0xd000_0000;
/// The payload stores here when it has finished `stop_after` blocks.
pub const MMIO_DONE: u64 = MMIO_REPORT + 8;

/// Guest RAM ranges (start, length) for `bytes` of memory, leaving the
/// 3–4 GiB gap free.
pub fn ram_ranges(bytes: u64) -> Vec<(u64, u64)> {
    if bytes <= MMIO_GAP_START {
        vec![(0, bytes)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, bytes - MMIO_GAP_START)]
    }
}

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;

/// Selectors (index << 3 | RPL).
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data selector, RPL 3.
pub const USER_DS: u16 = 0x18 | 3;
/// User 64-bit code selector, RPL 3.
pub const USER_CS: u16 = 0x20 | 3;
/// TSS selector (a 16-byte descriptor, entries 5 and 6).
pub const TSS_SEL: u16 = 0x28;

/// Address of vCPU `i`'s slot.
pub fn slot(i: usize) -> u64 {
    SLOTS + SLOT_SIZE * i as u64
}

/// Page-table entries to write: (guest address, value). Identity-maps the
/// first 4 GiB with 2 MiB user pages.
pub fn page_tables() -> Vec<(u64, u64)> {
    let flags = PRESENT | WRITABLE | USER;
    let mut v = vec![(PML4, PDPT | flags)];
    v.extend((0..4u64).map(|j| (PDPT + j * 8, (PD + j * 0x1000) | flags)));
    v.extend((0..2048u64).map(|i| (PD + i * 8, (i << 21) | flags | HUGE)));
    v
}

/// A flat segment descriptor as a `kvm_segment`.
fn segment(selector: u16, type_: u8, dpl: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl,
        db: u8::from(!long && type_ < 8), // 32-bit data; 0 for 64-bit code
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Pack a `kvm_segment` into a GDT descriptor (for the guest's view; KVM
/// itself uses the cached `kvm_segment`).
pub fn gdt_entry(s: &kvm_segment) -> u64 {
    let limit = u64::from(if s.g == 1 { s.limit >> 12 } else { s.limit });
    let base = s.base;
    let access = u64::from(s.type_)
        | u64::from(s.s) << 4
        | u64::from(s.dpl) << 5
        | u64::from(s.present) << 7;
    let flags = u64::from(s.avl) | u64::from(s.l) << 1 | u64::from(s.db) << 2 | u64::from(s.g) << 3;
    (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | access << 40
        | ((limit >> 16) & 0xf) << 48
        | flags << 52
        | ((base >> 24) & 0xff) << 56
}

/// The segments used: (kernel code, kernel data, user data, user code, tss).
pub fn segments() -> [kvm_segment; 5] {
    let tss = kvm_segment {
        base: TSS,
        limit: 0x67,
        selector: TSS_SEL,
        type_: 11, // 64-bit busy TSS
        present: 1,
        s: 0,
        ..Default::default()
    };
    [
        segment(KERNEL_CS, 0xb, 0, true),
        segment(KERNEL_DS, 0x3, 0, false),
        segment(USER_DS, 0x3, 3, false),
        segment(USER_CS, 0xb, 3, true),
        tss,
    ]
}

/// GDT contents: 8-byte entries from [`GDT`].
pub fn gdt() -> Vec<u64> {
    let [kc, kd, ud, uc, tss] = segments();
    let mut v = vec![
        0,
        gdt_entry(&kc),
        gdt_entry(&kd),
        gdt_entry(&ud),
        gdt_entry(&uc),
    ];
    // 16-byte system descriptor: low half like a segment, high half = base[63:32].
    v.push(gdt_entry(&kvm_segment { g: 0, ..tss }));
    v.push(tss.base >> 32);
    v
}

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Long mode with paging on top of `base` (as read from the vCPU). `user`
/// selects ring-3 (workload) or ring-0 (Linux entry) segments.
pub fn long_mode_sregs(mut s: kvm_sregs, user: bool) -> kvm_sregs {
    let [kc, kd, ud, uc, tss] = segments();
    let (code, data) = if user { (uc, ud) } else { (kc, kd) };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = tss;
    s.gdt.base = GDT;
    s.gdt.limit = (gdt().len() * 8 - 1) as u16;
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    s.cr3 = PML4;
    s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    s.efer = EFER_LME | EFER_LMA;
    s
}

/// RFLAGS: only the reserved bit 1; interrupts off.
pub const RFLAGS_USER: u64 = 0x2;

/// Registers for the workload on vCPU `i` (see `payload` for the contract).
pub fn workload_regs(i: usize, report_mask: u64, stop_after: u64) -> kvm_regs {
    kvm_regs {
        rip: CODE,
        rflags: RFLAGS_USER,
        rdi: slot(i),
        rsi: report_mask,
        r11: MMIO_REPORT,
        rbx: 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1),
        r10: stop_after,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_known_values() {
        let [kc, kd, ud, uc, _] = segments();
        // Classic flat 64-bit kernel code / data and user code descriptors.
        assert_eq!(gdt_entry(&kc), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(&kd), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(&uc), 0x00af_fb00_0000_ffff);
        assert_eq!(gdt_entry(&ud), 0x00cf_f300_0000_ffff);
        assert_eq!(gdt().len(), 7);
    }

    #[test]
    fn tables_map_first_4gib() {
        let t = page_tables();
        assert_eq!(t.len(), 1 + 4 + 2048);
        assert_eq!(t[1], (PDPT, PD | 7));
        assert_eq!(t[5], (PD, 0x87));
        assert_eq!(t[2052], (PD + 2047 * 8, (2047 << 21) | 0x87));
        assert!(slot(63) + SLOT_SIZE <= CODE);
        const { assert!(TSS >= GDT + 7 * 8 && PD + 4 * 0x1000 <= GDT) };
        assert_eq!(ram_ranges(1 << 20), vec![(0, 1 << 20)]);
        assert_eq!(ram_ranges(4 << 30), vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
    }
}
