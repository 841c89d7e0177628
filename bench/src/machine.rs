//! What the benchmarks ran on.

use anyhow::Result;
use serde_json::{json, Value};

use crate::pg::Server;

pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub postgres: String,
    pub pgbench: String,
    pub rustc: Option<String>,
    pub extension_version: String,
    pub extension_build: String,
    pub settings: Vec<(String, String)>,
    /// The installed library and its modification time, when the server is
    /// local.
    pub library: Option<(std::path::PathBuf, std::time::SystemTime)>,
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string())
}

async fn rustc() -> Option<String> {
    let out = tokio::process::Command::new("rustc")
        .arg("--version")
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether the installed extension library carries debug info sections: a
/// debug build does, a release build (debug info stripped) does not.
fn extension_build(pkglibdir: Option<&str>) -> String {
    let Some(dir) = pkglibdir else {
        return "unknown".into();
    };
    let path = std::path::Path::new(dir).join("lifecycle.so");
    match std::fs::read(&path)
        .ok()
        .and_then(|b| elf_has_debug_sections(&b))
    {
        Some(true) => "debug build: the library has debug info".into(),
        Some(false) => "release build: the library has no debug info".into(),
        None => "unknown".into(),
    }
}

/// Whether a 64-bit little-endian ELF file has `.debug_*` sections; `None`
/// when it is not such a file.
fn elf_has_debug_sections(b: &[u8]) -> Option<bool> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    if b.get(0..4)? != b"\x7fELF" || *b.get(4)? != 2 || *b.get(5)? != 1 {
        return None;
    }
    let shoff = u64_at(0x28)? as usize;
    let shentsize = u16_at(0x3A)? as usize;
    let shnum = u16_at(0x3C)? as usize;
    let shstrndx = u16_at(0x3E)? as usize;
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18)? as usize;
    for i in 0..shnum {
        let name = strtab + u32_at(header(i))? as usize;
        if b.get(name..name + 7).is_some_and(|n| n == b".debug_") {
            return Some(true);
        }
    }
    Some(false)
}

pub async fn describe(server: &Server) -> Result<Machine> {
    let admin = server.connect_admin().await?;
    let postgres: String = admin.query_one("SELECT version()", &[]).await?.get(0);
    let extension_version: String = admin
        .query_opt(
            "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'lifecycle'",
            &[],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or_else(|| "not available".into());
    let pkglibdir: Option<String> = admin
        .query_opt(
            "SELECT setting FROM pg_catalog.pg_config WHERE name = 'PKGLIBDIR'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0));
    let extension_build = if server.is_local() {
        extension_build(pkglibdir.as_deref())
    } else {
        "unknown (remote server)".into()
    };
    let library = if server.is_local() {
        pkglibdir.as_deref().and_then(|d| {
            let p = std::path::Path::new(d).join("lifecycle.so");
            modified(&p).map(|t| (p, t))
        })
    } else {
        None
    };
    let mut settings = Vec::new();
    for name in [
        "shared_buffers",
        "fsync",
        "synchronous_commit",
        "wal_level",
        "max_wal_size",
        "checkpoint_timeout",
        "jit",
    ] {
        let v: String = admin
            .query_one("SELECT current_setting($1)", &[&name])
            .await?
            .get(0);
        settings.push((name.to_string(), v));
    }
    Ok(Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model: cpu_model(),
        memory: memory(),
        kernel: kernel(),
        postgres,
        pgbench: server.pgbench_version().await.unwrap_or_default(),
        rustc: rustc().await,
        extension_version,
        extension_build,
        settings,
        library,
    })
}

impl Machine {
    /// Whether the extension's library was replaced since [`describe`] (a
    /// reinstall during the run: figures may mix builds).
    pub fn library_replaced(&self) -> bool {
        match &self.library {
            Some((path, t)) => modified(path).is_none_or(|now| now != *t),
            None => false,
        }
    }

    pub fn print(&self) {
        println!("machine");
        println!("  cpus (nproc)      {}", self.cpus);
        println!("  cpu model         {}", self.cpu_model);
        println!("  memory            {}", self.memory);
        println!("  kernel            {}", self.kernel);
        println!("  postgresql        {}", self.postgres);
        println!("  pgbench           {}", self.pgbench);
        if let Some(r) = &self.rustc {
            println!("  rustc             {r}");
        }
        println!(
            "  lifecycle         {}, {}",
            self.extension_version, self.extension_build
        );
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("  server settings   {}", settings.join(", "));
        if self.extension_build.starts_with("debug build") {
            println!(
                "  WARNING: the installed extension is a debug build; install a release build \
                 (cargo pgrx install --release) before taking figures"
            );
        }
    }

    pub fn to_json(&self) -> Value {
        let settings: serde_json::Map<String, Value> = self
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "memory": self.memory,
            "kernel": self.kernel,
            "postgresql": self.postgres,
            "pgbench": self.pgbench,
            "rustc": self.rustc,
            "lifecycle_version": self.extension_version,
            "lifecycle_build": self.extension_build,
            "server_settings": settings,
        })
    }
}
