//! The HTTP transport of OpenLineage: each event POSTed as JSON to `<url>/api/v1/lineage`
//! (Marquez's and the spec's endpoint). Plain `http://` only — the endpoint is a lineage
//! server on the operator's network or a local proxy; TLS is left to such a proxy. One
//! request a connection, a short timeout: a lineage server that is down must not hold a
//! stage up, and the root's log keeps every event either way.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use t0_core::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Where events go: host, port and the path of the lineage endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    host: String,
    port: u16,
    path: String,
}

impl Endpoint {
    /// `http://host[:port][/prefix]`; the events go to `<prefix>/api/v1/lineage`.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::Usage(format!("--lineage-url / T0CLIP_LINEAGE_URL: {url:?} {why}"));
        let rest =
            url.strip_prefix("http://").ok_or_else(|| bad("is not an http:// URL (for TLS, use a local proxy)"))?;
        let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("has a port that is not a number"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let prefix = prefix.trim_end_matches('/');
        let path = if prefix.is_empty() { "/api/v1/lineage".into() } else { format!("/{prefix}/api/v1/lineage") };
        Ok(Endpoint { host: host.into(), port, path })
    }

    /// POST one event; an answer other than 2xx is an error naming it.
    pub fn post(&self, body: &[u8]) -> Result<()> {
        let err = |e: String| {
            Error::Resource(format!("lineage endpoint http://{}:{}{}: {e}", self.host, self.port, self.path))
        };
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("no address".into()))?;
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| err(e.to_string()))?;
        s.set_read_timeout(Some(TIMEOUT)).map_err(|e| err(e.to_string()))?;
        s.set_write_timeout(Some(TIMEOUT)).map_err(|e| err(e.to_string()))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host,
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).and_then(|()| s.write_all(body)).map_err(|e| err(e.to_string()))?;
        let mut answer = Vec::new();
        // Only the status line matters; a server that closes after it is fine.
        let _ = s.take(64 * 1024).read_to_end(&mut answer);
        let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string();
        match status.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') => Ok(()),
            _ => Err(err(format!("answered {status:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_an_http_url_with_an_optional_prefix() {
        let e = Endpoint::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("127.0.0.1", 5000, "/api/v1/lineage"));
        let e = Endpoint::parse("http://lineage.internal/marquez/").unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/marquez/api/v1/lineage"));
        for bad in ["https://x", "http://:80", "http://x:port", "ftp://x"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
