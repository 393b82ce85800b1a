//! What `/proc` says about processes, parsed in one place for every part of
//! Slipway: the grabber (is an app's process alive, when did it start, which
//! processes run from an app's releases), the versionchecker (one pass over
//! `/proc/<pid>/stat` gives every process's group, state, CPU time, start and
//! resident pages), AppTracker's `/metrics` (this process's own figures), the
//! tests and the benchmarks.
//!
//! One definition of "alive" holds everywhere: the process exists and is
//! neither a zombie nor dead (`Z`, `X`, `x`), see [`Stat::is_alive`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    pub pgrp: u32,
    /// CPU time in clock ticks: user, system, and children waited for.
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    pub num_threads: u64,
    /// Clock ticks after boot when the process started.
    pub starttime: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

impl Stat {
    /// Running or sleeping: not a zombie waiting for its parent.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Its own CPU time, in ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses one `/proc/<pid>/stat` line. The command name is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    Some(Stat {
        pid,
        state: f.first()?.chars().next()?,
        pgrp: u32::try_from(n(2)?).ok()?,
        utime: n(11)?,
        stime: n(12)?,
        // Signed in the kernel's format; never negative in practice.
        cutime: n(13).unwrap_or(0),
        cstime: n(14).unwrap_or(0),
        num_threads: n(17)?,
        starttime: n(19)?,
        vsize_bytes: n(20)?,
        rss_pages: n(21)?,
    })
}

/// One process's stat, `None` when it is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether a process with this pid exists and is alive (see
/// [`Stat::is_alive`]).
pub fn pid_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.is_alive())
}

/// The live processes whose working directory is under `dir`, each with its
/// working directory relative to `dir` (both canonical). Empty when `dir`
/// does not exist.
pub fn processes_under(dir: &Path) -> Vec<(Stat, PathBuf)> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for pid in pids() {
        let Some(s) = stat(pid).filter(Stat::is_alive) else {
            continue;
        };
        let Some(cwd) = cwd(pid) else {
            continue;
        };
        if let Ok(rel) = cwd.strip_prefix(&dir) {
            found.push((s, rel.to_path_buf()));
        }
    }
    found
}

/// User plus system CPU time `pid` has used (its own, not its children's).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let s = stat(pid)?;
    Some(Duration::from_millis(
        s.cpu_ticks().saturating_mul(1000) / ticks_per_second(),
    ))
}

/// `VmRSS` of `pid` (`/proc/<pid>/status`), in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The pids `/proc` lists now (none when it cannot be read).
pub fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
}

/// Every process's stat, by process group: one pass over `/proc`.
pub fn by_group() -> HashMap<u32, Vec<Stat>> {
    let mut groups: HashMap<u32, Vec<Stat>> = HashMap::new();
    for pid in pids() {
        if let Some(s) = stat(pid) {
            groups.entry(s.pgrp).or_default().push(s);
        }
    }
    groups
}

/// A process's working directory.
pub fn cwd(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Who listens on a TCP port of this machine, from `/proc/net/tcp{,6}` and
/// the processes' open files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortHolders {
    /// Whether any socket listens on the port (any local address).
    pub listening: bool,
    /// The processes holding a listening socket on it that this process may
    /// look into (all of them as root; others' are hidden to a normal user).
    pub pids: Vec<u32>,
}

/// The listening sockets' inodes in one `/proc/net/tcp`-format table.
pub fn parse_listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let want = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let (_, local_port) = local.rsplit_once(':')?;
            // `0A` is TCP_LISTEN.
            (local_port.eq_ignore_ascii_case(&want) && *fields.get(3)? == "0A")
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .filter(|inode| *inode != 0)
        .collect()
}

/// Who listens on TCP `port`, on IPv4 or IPv6.
pub fn port_holders(port: u16) -> PortHolders {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(parse_listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return PortHolders::default();
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut holders = Vec::new();
    for pid in pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().map(|l| wanted.iter().any(|w| w == l)))
                .unwrap_or(false)
        });
        if holds {
            holders.push(pid);
        }
    }
    PortHolders {
        listening: true,
        pids: holders,
    }
}

/// A process's command name (`/proc/<pid>/comm`), for messages.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

/// Clock ticks per second (`USER_HZ`), the unit of `/proc` CPU times.
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(4096)
}

/// Seconds since boot, from `/proc/uptime`.
pub fn uptime_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// When the machine booted, in unix seconds (`btime` of `/proc/stat`).
pub fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// This process as Prometheus' standard `process_*` metrics describe it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelfMetrics {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// Unix seconds.
    pub start_time: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub threads: u64,
}

/// Reads this process's figures from `/proc/self`.
pub fn self_metrics() -> Option<SelfMetrics> {
    let s = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let hz = ticks_per_second() as f64;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        });
    Some(SelfMetrics {
        cpu_seconds: s.cpu_ticks() as f64 / hz,
        resident_bytes: s.rss_pages * page_size(),
        virtual_bytes: s.vsize_bytes,
        start_time: boot_time().unwrap_or(0) as f64 + s.starttime as f64 / hz,
        open_fds,
        max_fds,
        threads: s.num_threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 6904 1 0 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   106        0 7001 1 0 100 0 0 10 0\n   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1274 1 0 100 0 0 10 0\n";
        assert_eq!(parse_listening_inodes(table, 8080), vec![6904]);
        assert_eq!(parse_listening_inodes(table, 8081), vec![1274]);
        assert!(parse_listening_inodes(table, 80).is_empty());
        assert!(parse_listening_inodes("garbage\nmore garbage", 8080).is_empty());
    }

    #[test]
    fn a_listener_of_this_process_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let holders = port_holders(port);
        assert!(holders.listening);
        assert!(holders.pids.contains(&std::process::id()), "{holders:?}");
        drop(listener);
        assert_eq!(port_holders(port), PortHolders::default());
    }

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let line = "4242 (my (odd) app) S 1 4240 4240 0 -1 4194560 100 0 0 0 \
                    250 50 3 2 20 0 3 0 123456 10485760 512 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgrp, 4240);
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (250, 50, 3, 2));
        assert_eq!(s.num_threads, 3);
        assert_eq!(s.starttime, 123456);
        assert_eq!(s.vsize_bytes, 10485760);
        assert_eq!(s.rss_pages, 512);
        assert!(s.is_alive());
        assert!(!parse_stat(&line.replace(") S", ") Z")).unwrap().is_alive());
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_found_and_measured() {
        let me = stat(std::process::id()).unwrap();
        assert!(me.is_alive());
        assert!(pid_alive(me.pid));
        assert!(cpu_time(me.pid).is_some());
        assert!(rss_kb(me.pid).is_some_and(|kb| kb > 0));
        let here = std::env::current_dir().unwrap();
        assert!(
            processes_under(&here)
                .iter()
                .any(|(s, rel)| s.pid == me.pid && rel.as_os_str().is_empty())
        );
        let groups = by_group();
        assert!(groups[&me.pgrp].iter().any(|s| s.pid == me.pid));
        let m = self_metrics().unwrap();
        assert!(m.resident_bytes > 0 && m.open_fds > 0 && m.threads >= 1);
        assert!(m.start_time > 1.0e9, "{m:?}");
    }
}
