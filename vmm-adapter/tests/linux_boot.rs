//! Opt-in: boot a Linux kernel with a serial console.
//! `MAXWELL_TEST_LINUX_KERNEL=/path/to/vmlinux-or-bzImage cargo test -p maxwell-vmm --test linux_boot`

mod common;

use std::time::Duration;

use common::*;
use maxwell_vmm::{GuestBackend, GuestSpec};

#[test]
fn linux_kernel_prints_its_banner() {
    let Some(kernel) = std::env::var_os("MAXWELL_TEST_LINUX_KERNEL") else {
        eprintln!("linux_boot: skipped: set MAXWELL_TEST_LINUX_KERNEL=/path/to/vmlinux (opt-in)");
        return;
    };
    let Some(b) = kvm_or_skip("linux_boot") else {
        return;
    };
    let kernel = std::path::Path::new(&kernel);
    let (Some(dir), Some(name)) = (kernel.parent(), kernel.file_name()) else {
        panic!("MAXWELL_TEST_LINUX_KERNEL must name a file");
    };
    let text = format!(
        "name = 'linux'\nkind = 'linux'\nvcpus = 1\nmemory_mib = 256\nkernel = '{}'\n\
         cmdline = 'console=ttyS0 earlyprintk=serial,ttyS0 reboot=k panic=1 nokaslr'\n",
        std::path::Path::new(name).display()
    );
    let spec = GuestSpec::from_toml_in(&text, Some(dir)).expect("spec");
    let id = b.start(&spec).expect("start");
    let saw = eventually(Duration::from_secs(60), || {
        b.console(id).is_ok_and(|c| c.contains("Linux version"))
    });
    let info = b.info(id).expect("info");
    let console = b.console(id).expect("console");
    b.kill(id).expect("kill");
    eprintln!(
        "linux guest: {info:?}\n--- console (tail) ---\n{}",
        tail(&console)
    );
    assert!(saw, "no banner on the serial console");
    assert!(info.progress > 0);
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(2000);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}
