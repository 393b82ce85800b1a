//! Resident memory and CPU time of a process, from `/proc`.

use std::time::Duration;

/// `VmRSS` of `pid` in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User plus system CPU time `pid` has used.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = clock_ticks();
    Some(Duration::from_millis((utime + stime) * 1000 / hz))
}

/// This process's CPU time (all threads).
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time(std::process::id())
}

fn clock_ticks() -> u64 {
    // USER_HZ is 100 on every Linux this runs on; getconf would say so.
    100
}
