//! The built-in workload: 64-bit machine code, assembled by hand, that runs
//! in ring 3 (native speed under kvm-pvm) and counts finished blocks of work
//! in guest memory.
//!
//! Register contract at entry (set by the host through `KVM_SET_REGS`):
//! * `rdi` — address of this vCPU's slot: `[rdi]` = block counter (u64),
//!   `[rdi+8]` = last hash state (keeps the work observable).
//! * `rsi` — report mask: an `out` exit every `mask + 1` blocks.
//! * `r11` — MMIO report address (no RAM behind it, so a store exits to
//!   the host); `r11 + 8` is the "done" address.
//! * `rbx` — hash seed (non-zero).
//! * `r10` — stop after this many blocks (`u64::MAX` = never).
//!
//! The program:
//! ```text
//!         mov  [r11], eax       ; first exit: "I am alive"
//! top:    mov  ecx, BLOCK       ; iterations per block
//! inner:  <loop body>           ; hash: xorshift64 on rbx; count: inc rbx
//!         dec  ecx
//!         jnz  inner
//!         mov  [rdi+8], rbx     ; publish the hash state
//!         inc  qword [rdi]      ; progress += 1 block
//!         mov  rax, [rdi]
//!         cmp  rax, r10         ; reached stop_after?
//!         je   done
//!         test rax, rsi         ; time to report?
//!         jnz  top
//!         mov  [r11], eax       ; report the low 32 bits of the counter
//!         jmp  top
//! done:   mov  [r11+8], eax     ; "done"
//!         jmp  done             ; never resumed by the host
//! ```

use crate::spec::PayloadLoop;

/// Iterations of the inner loop per block (~0.1–0.3 ms of native work).
pub const BLOCK_ITERATIONS: u32 = 0x1_0000;
/// A report exit every 8 blocks.
pub const REPORT_MASK: u64 = 7;

/// A tiny assembler: bytes plus backward/forward rel8 jumps.
struct Asm {
    code: Vec<u8>,
    fixups: Vec<(usize, &'static str)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    fn new() -> Self {
        Asm {
            code: Vec::new(),
            fixups: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn emit(&mut self, bytes: &[u8]) {
        self.code.extend_from_slice(bytes);
    }
    fn label(&mut self, name: &'static str) {
        self.labels.push((name, self.code.len()));
    }
    /// A short jump (`opcode rel8`) to `target`, resolved in `finish`.
    fn jump(&mut self, opcode: u8, target: &'static str) {
        self.code.push(opcode);
        self.fixups.push((self.code.len(), target));
        self.code.push(0);
    }
    fn finish(mut self) -> Vec<u8> {
        for (at, target) in &self.fixups {
            let dest = self
                .labels
                .iter()
                .find(|(n, _)| n == target)
                .map_or(0, |(_, off)| *off as isize);
            let rel = dest - (*at as isize + 1);
            // Every jump in this program is short; a debug build proves it.
            debug_assert!((-128..=127).contains(&rel), "rel8 out of range");
            self.code[*at] = rel as i8 as u8;
        }
        self.code
    }
}

/// The payload for `which` loop.
pub fn assemble(which: PayloadLoop) -> Vec<u8> {
    const JNZ: u8 = 0x75;
    const JE: u8 = 0x74;
    const JMP: u8 = 0xeb;
    let mut a = Asm::new();
    a.emit(&[0x41, 0x89, 0x03]); // mov [r11], eax
    a.label("top");
    a.emit(&[0xb9]); // mov ecx, imm32
    a.emit(&BLOCK_ITERATIONS.to_le_bytes());
    a.label("inner");
    match which {
        PayloadLoop::Hash => {
            // xorshift64: x ^= x << 13; x ^= x >> 7; x ^= x << 17 (x = rbx, r8 scratch)
            for (shift_op, amount) in [(0xe0u8, 13u8), (0xe8, 7), (0xe0, 17)] {
                a.emit(&[0x49, 0x89, 0xd8]); // mov r8, rbx
                a.emit(&[0x49, 0xc1, shift_op, amount]); // shl/shr r8, imm8 (/4 = shl, /5 = shr)
                a.emit(&[0x4c, 0x31, 0xc3]); // xor rbx, r8
            }
        }
        PayloadLoop::Count => a.emit(&[0x48, 0xff, 0xc3]), // inc rbx
    }
    a.emit(&[0xff, 0xc9]); // dec ecx
    a.jump(JNZ, "inner");
    a.emit(&[0x48, 0x89, 0x5f, 0x08]); // mov [rdi+8], rbx
    a.emit(&[0x48, 0xff, 0x07]); // inc qword [rdi]
    a.emit(&[0x48, 0x8b, 0x07]); // mov rax, [rdi]
    a.emit(&[0x4c, 0x39, 0xd0]); // cmp rax, r10
    a.jump(JE, "done");
    a.emit(&[0x48, 0x85, 0xf0]); // test rax, rsi
    a.jump(JNZ, "top");
    a.emit(&[0x41, 0x89, 0x03]); // mov [r11], eax
    a.jump(JMP, "top");
    a.label("done");
    a.emit(&[0x41, 0x89, 0x43, 0x08]); // mov [r11+8], eax
    a.jump(JMP, "done");
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_resolve() {
        let code = assemble(PayloadLoop::Hash);
        // First instruction is the alive exit, then `mov ecx, BLOCK`.
        assert_eq!(code[..3], [0x41, 0x89, 0x03]);
        assert_eq!(code[3], 0xb9);
        // The last jump goes back to `done` (a 4-byte store before it).
        assert_eq!(code[code.len() - 2], 0xeb);
        assert_eq!(code[code.len() - 1] as i8, -6);
        // The inner loop's jnz lands on `inner` (offset 8).
        let body = 30;
        let jnz_at = 8 + body + 2;
        assert_eq!(code[jnz_at], 0x75);
        assert_eq!(jnz_at as isize + 2 + code[jnz_at + 1] as i8 as isize, 8);
        let count = assemble(PayloadLoop::Count);
        assert_eq!(count.len(), code.len() - body + 3);
    }
}
