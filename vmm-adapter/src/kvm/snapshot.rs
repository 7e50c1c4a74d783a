//! A paused KVM workload guest, whole: the pages of its memory that are not
//! zero, and each vCPU's registers (general, special, FPU). What Firecracker
//! carries in a snapshot, cut to what the built-in workload uses: it runs
//! in ring 3 with no devices, no interrupts and no MSRs beyond EFER (which
//! is in the special registers), and its progress counters live in its
//! memory, so a restored guest counts on from where it stopped.

use crate::error::{Result, VmmError};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use serde::{Deserialize, Serialize};

/// Bytes per page of a snapshot.
pub const PAGE: usize = 4096;

/// Version of [`GuestSnapshot`]'s layout; a restore refuses any other.
pub const SNAPSHOT_VERSION: u16 = 1;

/// One vCPU's registers, as the kernel's structs' bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuState {
    regs: Vec<u8>,
    sregs: Vec<u8>,
    fpu: Vec<u8>,
}

/// A paused guest's memory and registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSnapshot {
    pub version: u16,
    /// The guest's memory size, bytes (the restoring spec must match).
    pub memory_bytes: u64,
    /// `(guest physical address, PAGE bytes)` of every page not all zero.
    pub pages: Vec<(u64, Vec<u8>)>,
    pub vcpus: Vec<VcpuState>,
}

impl GuestSnapshot {
    /// Bytes of memory carried (the non-zero pages).
    pub fn memory_carried(&self) -> usize {
        self.pages.len() * PAGE
    }
}

/// The bytes of a kernel register struct.
fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: `T` is one of the kvm-bindings register structs: plain
    // integers with explicit padding fields, so every byte is initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

/// A kernel register struct from its bytes.
fn from_bytes<T: Copy + Default>(what: &'static str, b: &[u8]) -> Result<T> {
    if b.len() != std::mem::size_of::<T>() {
        return Err(VmmError::invalid(
            "snapshot",
            format!(
                "{what} is {} bytes, not {}",
                b.len(),
                std::mem::size_of::<T>()
            ),
        ));
    }
    let mut v = T::default();
    // SAFETY: the lengths match and any bit pattern is a valid value of
    // these integer-only structs.
    unsafe {
        std::ptr::copy_nonoverlapping(b.as_ptr(), (&mut v as *mut T).cast::<u8>(), b.len());
    }
    Ok(v)
}

impl VcpuState {
    pub(crate) fn new(regs: &kvm_regs, sregs: &kvm_sregs, fpu: &kvm_fpu) -> Self {
        Self {
            regs: bytes_of(regs),
            sregs: bytes_of(sregs),
            fpu: bytes_of(fpu),
        }
    }

    pub(crate) fn regs(&self) -> Result<kvm_regs> {
        from_bytes("regs", &self.regs)
    }

    pub(crate) fn sregs(&self) -> Result<kvm_sregs> {
        from_bytes("sregs", &self.sregs)
    }

    pub(crate) fn fpu(&self) -> Result<kvm_fpu> {
        from_bytes("fpu", &self.fpu)
    }
}
