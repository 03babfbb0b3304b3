//! Admission control: who may open a connection, and how many at once.
//!
//! Checked in the accept loop before anything is read from the socket, in
//! this order: the source IP allowlist, the per-IP cap, the global cap
//! (`max_connections`, in `Server::run`). A refused socket is dropped at
//! once, so a refusal costs no task, no buffer and no timer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmissionError {
    #[error("{entry:?} is not an IP address or CIDR block (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)")]
    BadEntry { entry: String },
}

/// Source addresses allowed to connect. Empty allows every address.
#[derive(Debug, Clone, Default)]
pub struct IpAllowlist {
    nets: Vec<IpNet>,
}

impl IpAllowlist {
    /// Parses entries such as `10.0.0.0/8`, `192.0.2.7` (one host) or `fd00::/8`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, AdmissionError> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| AdmissionError::BadEntry {
                        entry: e.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// True when `ip` may connect. An IPv4 peer seen on a dual-stack socket
    /// as `::ffff:a.b.c.d` is matched as the IPv4 address it is.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.is_empty() || self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// Why a connection was turned away; the label of
/// `hl7bridge_refused_connections_total{reason=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source address is not in `allow_ips`.
    NotAllowed,
    /// The source address already has `max_connections_per_ip` open.
    PerIpLimit,
    /// `max_connections` are open.
    MaxConnections,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "ip_not_allowed",
            Refusal::PerIpLimit => "per_ip_limit",
            Refusal::MaxConnections => "max_connections",
        }
    }
}

/// The allowlist and the per-IP cap, shared by the accept loop and the
/// guards of open connections.
#[derive(Debug, Default)]
pub struct Admission {
    allow: IpAllowlist,
    /// 0: no per-IP cap.
    max_per_ip: usize,
    /// Open connections by source address. Entries are removed when their
    /// count reaches zero, so the map never holds more entries than there
    /// are open connections (at most `max_connections`).
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    pub fn new(allow: IpAllowlist, max_per_ip: usize) -> Self {
        Self {
            allow,
            max_per_ip,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn max_per_ip(&self) -> usize {
        self.max_per_ip
    }

    /// Admits a connection from `ip`, or says why not. The guard holds the
    /// per-IP slot until it is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<IpGuard, Refusal> {
        let ip = ip.to_canonical();
        if !self.allow.allows(ip) {
            return Err(Refusal::NotAllowed);
        }
        if self.max_per_ip > 0 {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let n = open.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                return Err(Refusal::PerIpLimit);
            }
            *n += 1;
        }
        Ok(IpGuard {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections currently open from `ip` (as counted for the per-IP cap).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

/// A connection's per-IP slot; released on drop.
#[derive(Debug)]
pub struct IpGuard {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        if self.admission.max_per_ip == 0 {
            return;
        }
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_hosts_and_mapped_addresses() {
        let a = IpAllowlist::parse(&["10.0.0.0/8", "192.0.2.7", "fd00::/8", " 172.16.5.9/12 "])
            .unwrap();
        assert!(a.allows(ip("10.200.3.4")));
        assert!(!a.allows(ip("11.0.0.1")));
        assert!(a.allows(ip("192.0.2.7")));
        assert!(!a.allows(ip("192.0.2.8")));
        assert!(a.allows(ip("fd12::1")));
        assert!(!a.allows(ip("fe80::1")));
        assert!(
            a.allows(ip("172.31.0.1")),
            "host bits of a block are ignored"
        );
        assert!(a.allows(ip("::ffff:10.1.1.1")), "IPv4-mapped IPv6");
        assert!(IpAllowlist::parse::<&str>(&[])
            .unwrap()
            .allows(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "ten", "10.0.0", ""] {
            assert_eq!(
                IpAllowlist::parse(&[bad]).unwrap_err(),
                AdmissionError::BadEntry { entry: bad.into() }
            );
        }
    }

    #[test]
    fn per_ip_cap_counts_and_releases() {
        let adm = Arc::new(Admission::new(IpAllowlist::default(), 2));
        let a = adm.admit(ip("127.0.0.1")).unwrap();
        let b = adm.admit(ip("127.0.0.1")).unwrap();
        assert_eq!(adm.admit(ip("127.0.0.1")).unwrap_err(), Refusal::PerIpLimit);
        let other = adm.admit(ip("127.0.0.2")).unwrap();
        drop(a);
        let c = adm.admit(ip("127.0.0.1")).unwrap();
        drop((b, c, other));
        assert!(
            adm.open.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn refused_by_allowlist_before_counting() {
        let adm = Arc::new(Admission::new(
            IpAllowlist::parse(&["10.0.0.0/8"]).unwrap(),
            1,
        ));
        assert_eq!(adm.admit(ip("127.0.0.1")).unwrap_err(), Refusal::NotAllowed);
        assert_eq!(adm.open_from(ip("127.0.0.1")), 0);
    }
}
