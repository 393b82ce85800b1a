//! A TCP proxy a test can break, standing for the network between two
//! parts: [`Link::Up`] forwards, [`Link::Partitioned`] drops everything
//! (what a cut cable or a firewall that drops packets does: nothing is
//! refused, nothing answers, bytes in flight wait, and flow again when the
//! link is back unless an end gave up), [`Link::Refusing`] closes every
//! connection at once (a server that is down: connection refused/reset).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The state of a [`FaultProxy`]'s link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    Partitioned,
    Refusing,
}

/// Forwards a loopback port to `upstream` until dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    link: Arc<watch::Sender<Link>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a free loopback port, link up.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let link = Arc::new(watch::Sender::new(Link::Up));
        let for_accept = link.clone();
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                tokio::spawn(connection(down, upstream, for_accept.subscribe()));
            }
        });
        Ok(Self { addr, link, accept })
    }

    /// The proxy's address: give it to the client instead of `upstream`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the link, for connections open and to come.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections see the sender go and close.
        self.link.send_replace(Link::Refusing);
    }
}

/// Waits until the link is up; `false` when it refuses (or the proxy is
/// gone): the connection closes.
async fn until_up(link: &mut watch::Receiver<Link>) -> bool {
    match link.wait_for(|l| *l != Link::Partitioned).await {
        Ok(l) => *l == Link::Up,
        Err(_) => false,
    }
}

async fn connection(down: TcpStream, upstream: SocketAddr, mut link: watch::Receiver<Link>) {
    // A partition holds a new connection unanswered, as a dropped SYN-ACK
    // would (the client's connect succeeded here, its first request waits).
    if !until_up(&mut link).await {
        return;
    }
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    tokio::select! {
        _ = pump(dr, uw, link.clone()) => {}
        _ = pump(ur, dw, link.clone()) => {}
    }
}

/// Copies `from` to `to`, each chunk only while the link is up.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Refusing closes open connections at once, idle ones too.
            _ = link.wait_for(|l| *l == Link::Refusing) => return,
        };
        if !until_up(&mut link).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
