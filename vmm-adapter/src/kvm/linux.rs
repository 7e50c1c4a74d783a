//! The second guest kind: a Linux kernel (vmlinux ELF or bzImage) loaded
//! with linux-loader and entered directly in 64-bit mode (ring 0), with a
//! vm-superio 16550 on COM1 as its console.
//!
//! Under kvm-pvm, ring-0 code goes through KVM's instruction emulator, so a
//! stock kernel prints its banner and then stops on instructions the
//! emulator refuses (`cmpxchg16b`, `xrstor`, ...): the vCPU exits with an
//! internal error and the guest shows as `Exited` with that reason. On a
//! hardware-virtualised host the same path boots normally.

use std::io::{Seek, SeekFrom};

use kvm_bindings::{kvm_pit_config, kvm_regs, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VmFd;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::{load_cmdline, BzImage, Cmdline, Elf, KernelLoader, KernelLoaderResult};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::vcpu::{ConsoleSink, Io, IrqTrigger, Serial};
use crate::error::{Result, VmmError};
use crate::spec::LinuxBoot;

/// Zero page (boot_params).
const ZERO_PAGE: u64 = 0xa000;
/// Initial stack top.
const BOOT_STACK: u64 = 0xeff0;
/// Kernel command line.
const CMDLINE: u64 = 0x2_0000;
const CMDLINE_MAX: usize = 4096;
/// Where the kernel goes.
const HIMEM: u64 = 0x10_0000;
/// End of low RAM (below the EBDA).
const LOW_RAM_END: u64 = 0x9_fc00;
/// Smallest memory a kernel gets.
const MIN_LINUX_MIB: u32 = 32;
const E820_RAM: u32 = 1;
const SERIAL_IRQ: u32 = 4;
/// Identity map the TSS needs on Intel hosts (below 4 GiB, out of RAM).
const TSS_ADDR: usize = 0xfffb_d000;

fn kernel_err(boot: &LinuxBoot, reason: impl Into<String>) -> VmmError {
    VmmError::Kernel {
        path: boot.kernel.clone(),
        reason: reason.into(),
    }
}

/// Build the VM side (irqchip, PIT, kernel, cmdline, zero page) and return
/// the single vCPU's I/O handler and registers.
pub(super) fn prepare(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    boot: &LinuxBoot,
    sink: ConsoleSink,
    vcpus: usize,
) -> Result<(Io, kvm_regs)> {
    if vcpus != 1 {
        return Err(VmmError::Unsupported {
            backend: crate::backend::BackendName::Kvm,
            what: "linux guests boot one vCPU (no SMP bring-up)".into(),
        });
    }
    let mem_bytes: u64 = vm_memory::GuestMemoryBackend::iter(mem)
        .map(vm_memory::GuestMemoryRegion::len)
        .sum();
    if mem_bytes < u64::from(MIN_LINUX_MIB) << 20 {
        return Err(VmmError::invalid(
            "memory_mib",
            format!("a linux guest needs at least {MIN_LINUX_MIB} MiB"),
        ));
    }
    vm.set_tss_address(TSS_ADDR)
        .map_err(|e| VmmError::kvm("KVM_SET_TSS_ADDR", e))?;
    vm.create_irq_chip()
        .map_err(|e| VmmError::kvm("KVM_CREATE_IRQCHIP", e))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit)
        .map_err(|e| VmmError::kvm("KVM_CREATE_PIT2", e))?;

    let loaded = load_kernel(mem, boot)?;
    let mut cmdline = Cmdline::new(CMDLINE_MAX).map_err(|e| kernel_err(boot, e.to_string()))?;
    cmdline
        .insert_str(&boot.cmdline)
        .map_err(|e| kernel_err(boot, format!("cmdline: {e}")))?;
    load_cmdline(mem, GuestAddress(CMDLINE), &cmdline)
        .map_err(|e| kernel_err(boot, format!("cmdline: {e}")))?;
    write_zero_page(mem, boot, &loaded, boot.cmdline.len() + 1, mem_bytes)?;

    let irq = EventFd::new(EFD_NONBLOCK).map_err(|e| VmmError::host("eventfd", "", e))?;
    vm.register_irqfd(&irq, SERIAL_IRQ)
        .map_err(|e| VmmError::kvm("KVM_IRQFD", e))?;
    let serial = Serial::new(IrqTrigger(irq), sink);
    let entry = match loaded.setup_header {
        // bzImage: the 64-bit entry is 0x200 past the protected-mode start.
        Some(_) => loaded.kernel_load.0 + 0x200,
        None => loaded.kernel_load.0,
    };
    let regs = kvm_regs {
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE,
        rflags: 0x2,
        ..Default::default()
    };
    Ok((Io::Linux(Box::new(serial)), regs))
}

fn load_kernel(mem: &GuestMemoryMmap, boot: &LinuxBoot) -> Result<KernelLoaderResult> {
    let mut f = crate::kernel_dir::open_beneath(&boot.kernel_dir, &boot.kernel)
        .map_err(|e| kernel_err(boot, e.to_string()))?;
    let elf = Elf::load(mem, None, &mut f, Some(GuestAddress(HIMEM)));
    if let Ok(r) = elf {
        return Ok(r);
    }
    f.seek(SeekFrom::Start(0))
        .map_err(|e| kernel_err(boot, e.to_string()))?;
    BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM))).map_err(|bz| {
        let elf = elf.err().map(|e| e.to_string()).unwrap_or_default();
        kernel_err(boot, format!("neither ELF ({elf}) nor bzImage ({bz})"))
    })
}

fn write_zero_page(
    mem: &GuestMemoryMmap,
    boot: &LinuxBoot,
    loaded: &KernelLoaderResult,
    cmdline_size: usize,
    mem_bytes: u64,
) -> Result<()> {
    let mut p = boot_params::default();
    if let Some(hdr) = loaded.setup_header {
        p.hdr = hdr;
    }
    p.hdr.type_of_loader = 0xff;
    p.hdr.boot_flag = 0xaa55;
    p.hdr.header = 0x5372_6448; // "HdrS"
    p.hdr.cmd_line_ptr = CMDLINE as u32;
    p.hdr.cmdline_size = cmdline_size as u32;
    p.hdr.kernel_alignment = 0x0100_0000;
    let mut ram = vec![(0, LOW_RAM_END)];
    for (start, len) in super::layout::ram_ranges(mem_bytes) {
        // Low memory above 640 KiB is reserved (BIOS area) in the classic map.
        ram.push(if start == 0 {
            (HIMEM, len - HIMEM)
        } else {
            (start, len)
        });
    }
    for (i, (addr, size)) in ram.iter().enumerate() {
        p.e820_table[i].addr = *addr;
        p.e820_table[i].size = *size;
        p.e820_table[i].r#type = E820_RAM;
    }
    p.e820_entries = ram.len() as u8;
    LinuxBootConfigurator::write_bootparams(&BootParams::new(&p, GuestAddress(ZERO_PAGE)), mem)
        .map_err(|e| kernel_err(boot, format!("zero page: {e}")))
}
