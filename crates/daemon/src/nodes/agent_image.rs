//! Whether an agent binary can run in CloudShell, read from its ELF headers
//! before it is sent to every region.
//!
//! CloudShell machines are Linux x86-64 with Amazon Linux's glibc (2.26 on
//! Amazon Linux 2, 2.34 on Amazon Linux 2023). A binary built on a newer
//! Linux asks for newer GLIBC symbol versions and fails there at start; one
//! built on macOS is not ELF at all. Both are caught here, with what to do.

use object::Endianness;
use object::elf::{EM_X86_64, FileHeader64, SHT_SYMTAB};
use object::read::elf::{FileHeader as _, SectionHeader as _};

/// The newest glibc every CloudShell machine has (Amazon Linux 2's).
pub const CLOUDSHELL_GLIBC: GlibcVersion = GlibcVersion(2, 26);

/// How to build an agent that passes, for error messages.
pub const BUILD_HINT: &str = "build a portable one with `scripts/build-agent` (cargo-zigbuild against glibc 2.17, stripped) and pass it with --agent-binary";

/// A glibc symbol version, such as 2.34 in `GLIBC_2.34`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub u32, pub u32);

impl std::fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What the headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentImage {
    /// The newest GLIBC symbol version it needs; `None` for a static binary.
    pub glibc: Option<GlibcVersion>,
    /// It carries a symbol table or debug sections (strip it: every byte
    /// goes through the user's uplink to every region).
    pub unstripped: bool,
    /// Its size in bytes.
    pub size: usize,
}

impl AgentImage {
    /// True when CloudShell's glibc is new enough for it.
    pub fn runs_on_cloudshell_glibc(&self) -> bool {
        self.glibc.is_none_or(|v| v <= CLOUDSHELL_GLIBC)
    }
}

/// Why a binary cannot run in CloudShell at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentImageError {
    /// Not an ELF file; says what it looks like.
    #[error("it is not a Linux program ({0})")]
    NotElf(&'static str),
    /// ELF, but not 64-bit little-endian.
    #[error(
        "it is a 32-bit or big-endian ELF program; CloudShell runs 64-bit x86 (x86-64) programs"
    )]
    NotElf64,
    /// ELF for another processor.
    #[error("it is built for {0}; CloudShell runs x86-64 programs")]
    WrongArchitecture(String),
    /// The headers could not be read.
    #[error("its ELF headers are damaged: {0}")]
    Damaged(String),
}

/// Reads `bytes` as an agent binary.
pub fn inspect(bytes: &[u8]) -> Result<AgentImage, AgentImageError> {
    if !bytes.starts_with(b"\x7fELF") {
        return Err(AgentImageError::NotElf(looks_like(bytes)));
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian.
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(AgentImageError::NotElf64);
    }
    let damaged = |e: object::read::Error| AgentImageError::Damaged(e.to_string());
    let header = FileHeader64::<Endianness>::parse(bytes).map_err(damaged)?;
    let endian = header.endian().map_err(damaged)?;
    let machine = header.e_machine(endian);
    if machine != EM_X86_64 {
        return Err(AgentImageError::WrongArchitecture(machine_name(machine)));
    }
    let sections = header.sections(endian, bytes).map_err(damaged)?;
    let mut glibc = None;
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, bytes).map_err(damaged)? {
        let strings = sections.strings(endian, bytes, link).map_err(damaged)?;
        while let Some((_, mut versions)) = needs.next().map_err(damaged)? {
            while let Some(version) = versions.next().map_err(damaged)? {
                let name = version.name(endian, strings).map_err(damaged)?;
                if let Some(v) = parse_glibc(name) {
                    glibc = glibc.max(Some(v));
                }
            }
        }
    }
    let unstripped = sections.iter().any(|s| {
        s.sh_type(endian) == SHT_SYMTAB
            || sections
                .section_name(endian, s)
                // Not `.debug_gdb_scripts`: Rust keeps that loaded, stripped or not.
                .is_ok_and(|n| n == b".debug_info" || n == b".debug_line")
    });
    Ok(AgentImage {
        glibc,
        unstripped,
        size: bytes.len(),
    })
}

/// `GLIBC_2.34` -> 2.34 (`GLIBC_PRIVATE` and others are not versions).
fn parse_glibc(name: &[u8]) -> Option<GlibcVersion> {
    let rest = std::str::from_utf8(name.strip_prefix(b"GLIBC_")?).ok()?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some(GlibcVersion(major, minor))
}

fn looks_like(bytes: &[u8]) -> &'static str {
    match bytes.get(..4) {
        Some([0xcf, 0xfa, 0xed, 0xfe] | [0xfe, 0xed, 0xfa, 0xcf] | [0xca, 0xfe, 0xba, 0xbe]) => {
            "a macOS Mach-O program"
        }
        Some([b'M', b'Z', ..]) => "a Windows program",
        Some([b'#', b'!', ..]) => "a script",
        _ if bytes.is_empty() => "an empty file",
        _ => "not an executable format this knows",
    }
}

fn machine_name(machine: u16) -> String {
    match machine {
        object::elf::EM_AARCH64 => "ARM64 (aarch64)".to_owned(),
        object::elf::EM_386 => "32-bit x86".to_owned(),
        object::elf::EM_RISCV => "RISC-V".to_owned(),
        other => format!("ELF machine {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_parse_and_order() {
        assert_eq!(parse_glibc(b"GLIBC_2.34"), Some(GlibcVersion(2, 34)));
        assert_eq!(parse_glibc(b"GLIBC_2.2.5"), Some(GlibcVersion(2, 2)));
        assert_eq!(parse_glibc(b"GLIBC_PRIVATE"), None);
        assert_eq!(parse_glibc(b"GCC_3.0"), None);
        assert!(GlibcVersion(2, 9) < GlibcVersion(2, 26));
        assert!(GlibcVersion(2, 34) > CLOUDSHELL_GLIBC);
    }

    #[test]
    fn foreign_files_are_named() {
        let err = |b: &[u8]| inspect(b).unwrap_err().to_string();
        assert!(err(&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]).contains("macOS"));
        assert!(err(b"#!/bin/sh\necho hi\n").contains("script"));
        assert!(err(b"").contains("empty"));
        let mut elf32 = b"\x7fELF".to_vec();
        elf32.extend([1, 1, 1, 0]);
        assert!(err(&elf32).contains("32-bit"));
        let mut truncated = b"\x7fELF".to_vec();
        truncated.extend([2, 1, 1, 0]);
        assert!(err(&truncated).contains("damaged"));
    }

    #[test]
    fn this_test_program_is_read() {
        // The test binary itself: x86-64 ELF, dynamically linked against glibc.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let image = inspect(&me).unwrap();
        assert!(
            image.glibc.is_some_and(|v| v >= GlibcVersion(2, 2)),
            "{image:?}"
        );
        assert!(image.unstripped, "test binaries keep their symbols");
        assert_eq!(image.size, me.len());
    }
}
